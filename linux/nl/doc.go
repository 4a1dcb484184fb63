// Package nl is the repository's one rtnetlink layer, over
// mdlayher/netlink and jsimonetti/rtnetlink: finding links by name or MAC,
// listing, adding and removing addresses and routes (nl_linux.go), and
// reading link notifications as parsed link states (link_linux.go). Both
// halves use it on Linux: the agent's platform (linux/network, linux/dhcp,
// linux/netmon) and the IMDS's host-interface binder (imds/guestnet). It
// imports nothing of the project, so any Linux code may build on it; it
// states what the kernel says and decides nothing.
package nl
