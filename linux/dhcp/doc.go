// Package dhcp renews DHCP leases on Linux through whichever client owns an
// interface: a running dhclient, dhcpcd or busybox udhcpc (found in /proc),
// systemd-networkd or NetworkManager (through their D-Bus APIs, linux/netmgr;
// networkctl and nmcli only when there is no system bus), or, for
// images that have none, a built-in client (insomniacslk/dhcp nclient4)
// that applies the lease through rtnetlink.
package dhcp
