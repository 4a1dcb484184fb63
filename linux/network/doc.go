// Package network applies the static part of the network section on Linux:
// per interface (matched by MAC) addresses, default gateway, routes and MTU
// live through rtnetlink, persisted for whichever manager the target uses
// (systemd-networkd, NetworkManager or ifupdown), and DNS through
// systemd-resolved or an atomically written /etc/resolv.conf. It changes only
// what differs, records what it added under the state directory (each item as
// soon as it is added, so a failed apply loses track of nothing), and never
// removes an address or route it did not add.
//
// An interface switched to dhcp4 loses the addresses and routes the agent
// added to it and the file the agent persisted for its MAC; DHCP and the
// root's own configuration take it over.
//
// Offline (Options.Live false: Root is an image, not the running machine)
// no link is touched and netlink is not used: the section is only persisted,
// matched by MAC. ifupdown configures interfaces by name, which an offline
// root cannot tell from a MAC, so a static interface fails there, naming the
// MAC.
package network
