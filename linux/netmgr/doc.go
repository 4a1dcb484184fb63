// Package netmgr renews DHCP leases through the network managers' own D-Bus
// APIs: systemd-networkd (org.freedesktop.network1) and NetworkManager
// (org.freedesktop.NetworkManager), with github.com/godbus/dbus/v5 on the
// system bus. networkctl and nmcli, which it replaces, lose the manager's
// error and return before the renewal is over; here a renewal returns when
// the manager reports the new lease, bounded by the caller's context, and a
// refusal is an *Error carrying the manager's D-Bus error name and text.
//
// systemd-networkd (252, Debian 12) has no D-Bus object for its DHCPv4
// lease: the lease is the link's address whose ConfigSource is DHCPv4 in
// Link.Describe's JSON, with its lifetime as an absolute CLOCK_BOOTTIME
// time, which a renewal always moves. networkd emits no signal for a renewal
// that keeps the address, so the wait re-reads Describe on every
// PropertiesChanged of the link and otherwise on a short backoff (10 ms
// doubling to 200 ms). Link.Renew sends the host name networkd read when it
// configured the link, and in RENEWING networkd listens on a socket bound
// to the leased address, so a server's broadcast NAK (dnsmasq's, for an
// address it moved) never reaches it and it keeps the old address until
// T2. NetworkdOptions.Reconfigure calls Link.Reconfigure instead: networkd
// reads the host name again and starts its DHCP client over with DISCOVER
// (the address is dropped and leased again; the link stays up).
//
// NetworkManager (1.42) has no renew method. Device.Reapply of the applied
// connection with a changed DHCP setting restarts the device's DHCP
// transaction (a REQUEST for the current address) without deactivating the
// device: NMRenew sets ipv4.dhcp-hostname to the current host
// name (unless ipv4.dhcp-send-hostname is off or an FQDN is configured)
// and, when that changes nothing, moves ipv4.dhcp-timeout by one second.
// Reapply changes only the applied connection, never the saved profile.
// The renewal is over when the device's DHCP4Config announces options
// holding a lease (PropertiesChanged) or reports a new expiry or address,
// and fails when the device leaves the activated state, with
// NetworkManager's state reason. NetworkManager gives the expiry in whole
// seconds and announces nothing for a lease identical to the one it has,
// so a renewal starts in a later second than the lease it replaces (a wait
// under a second, only for a lease obtained this second).
//
// NetworkdApply and NMApply (apply_linux.go) make a running manager load
// a configuration file written for it (linux/network's static one) and
// configure the link from it: networkd's Manager.Reload and
// Link.Reconfigure, NetworkManager's Settings.LoadConnections and
// ActivateConnection. They return once the manager reports the link
// configured from that file with the wanted addresses and no DHCPv4
// lease, and change nothing when it already is.
//
// NetworkManager authorizes a caller by its PID: a process outside the
// machine's PID namespace (a test on the host of a container) is refused
// ("Unable to determine UID of the request"); the agent runs inside.
package netmgr
