// Package e2e holds Prewarm's end-to-end tests: the real prewarm-imds and
// prewarm-agent binaries, real network namespaces joined by veth pairs, a
// real dnsmasq on the host side and a real DHCP client in each guest, and
// (for the VM tests) a QEMU guest booting Debian's kernel.
//
// The harness lives in the non-test files (all Linux-only), built from the
// pieces of e2e/netlab (the repository's one network-namespace harness): a
// Lab is one host network namespace that runs dnsmasq and prewarm-imds; a
// Guest is a network namespace joined to it by a veth pair, with its own
// UTS, mount and PID namespaces and private /etc, /home, /var/log,
// /var/lib and /run, so that hostname, users and DHCP clients never touch
// this machine.
//
// The tests need root (network namespaces, mounts) and skip with a message
// otherwise. They build both binaries themselves; set PREWARM_BIN to a
// directory holding prewarm-imds and prewarm-agent to use those instead.
// PREWARM_E2E_VM=full runs the long VM test; the reduced VM test runs by
// default when QEMU is installed (PREWARM_E2E_VM=0 skips it).
package e2e
