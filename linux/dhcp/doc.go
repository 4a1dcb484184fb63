// Package dhcp renews DHCP leases on Linux through whichever client owns an
// interface: a running dhclient, dhcpcd or busybox udhcpc (found in /proc),
// systemd-networkd (networkctl renew), NetworkManager (nmcli), or, for
// images that have none, a built-in client (insomniacslk/dhcp nclient4)
// that applies the lease through rtnetlink.
package dhcp
