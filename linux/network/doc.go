// Package network applies the static part of the network section on Linux:
// per interface (matched by MAC) addresses, default gateway, routes and MTU
// live through rtnetlink, persisted for whichever manager the target uses
// (systemd-networkd, NetworkManager or ifupdown), and DNS through
// systemd-resolved or an atomically written /etc/resolv.conf. It changes only
// what differs, records what it added under the state directory (each item as
// soon as it is added, so a failed apply loses track of nothing), and never
// removes an address or route it did not add.
//
// Hostile values never reach a file or a command: parse refuses an IPv6 zone
// in any address field and a MAC that is not 48 bits, addresses are written
// from netip values without their zone, and every other value goes through
// the one rule of its format (escape_linux.go): refusal for networkd,
// ifupdown and resolv.conf, GKeyFile escaping for NetworkManager keyfiles,
// shell quoting on ifupdown "up" lines. All files and DNS settings are
// rendered before anything changes, so a refused value changes nothing. A
// live change that fails leaves the interface's persisted file and DNS as
// they were, and its error names each change made before the failure. A
// changed gateway or route via is replaced in one step, never added beside
// the old one (which failed with "file exists"). A route's metric is its
// priority, which the kernel keys routes by: a changed metric is a new
// route, added before the agent's old one is removed.
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
