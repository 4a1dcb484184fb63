// Package network applies the static part of the network section on Linux:
// per interface (matched by MAC) addresses, default gateway, routes and MTU
// live through rtnetlink, persisted for whichever manager the target uses
// (systemd-networkd, NetworkManager or ifupdown), and DNS through
// systemd-resolved or an atomically written /etc/resolv.conf. It changes only
// what differs, records what it added under the state directory, and never
// removes an address or route it did not add.
package network
