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
// route is appended (nl.PutRoute, NLM_F_APPEND as NetworkManager adds
// routes) beside another link's route to the same network and metric,
// which stays (a DHCP eth0's default route beside a static eth1's
// gateway4); then the link's own route to that network and metric through
// another gateway (the agent's old one, or a DHCP option 121 route) is
// removed: a changed gateway or via never leaves the link without the
// route, and only routes of the link being configured are ever replaced
// or removed. A route's metric is its priority, which the kernel keys
// routes by: a changed metric is a new route, added before the agent's old
// one is removed.
//
// On the live system (Root "/") the running manager is then told, through
// its D-Bus API (linux/netmgr): systemd-networkd reloads its files and
// reconfigures the link, NetworkManager loads the keyfile and activates it
// on the device, and the apply waits (at most 90 s) until the manager
// reports the link configured from the agent's file with the document's
// addresses and no DHCPv4 lease. Without that a manager kept running DHCP
// on a link the document made static until the next boot. The manager
// configures the same addresses and routes the rtnetlink apply set, so it
// takes them over instead of flapping them: NetworkManager keyfiles set
// route-metric=0 (the kernel's default priority, the agent's routes'),
// networkd files turn IPv6 link-local addressing off under an MTU below
// 1280 (networkd raises such an MTU otherwise), and NetworkManager
// reapplies a changed profile that is already active in place. A manager's refusal (a link it
// leaves unmanaged, an activation NetworkManager refuses) fails the
// interface with the manager's error; no bus or no manager running keeps
// the files for the next boot, as before. An interface switched back to
// dhcp4 makes the manager reload (its own configuration takes over),
// without waiting for the lease.
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
