// Package virtlab runs a private libvirt for tests: libvirtd and virtlogd
// (and, when asked, prewarm-imds) as the only processes of a fresh PID,
// network and mount namespace, so the bridges, dnsmasq instances, taps and
// QEMU guests they make exist only there and die with it, and nothing of
// this machine's own libvirt state (/etc/libvirt/qemu, /var/lib/libvirt,
// /run/libvirt, /var/log/libvirt) is read or written.
//
// The namespace's PID 1 is the test binary itself, re-executed (this
// package's init recognises the environment variable and never returns):
// it mounts the private state directories, brings up lo with
// 169.254.169.254/32 on it, starts the daemons, reports ready through a
// pipe, and then reaps every orphan (QEMU processes that libvirt destroys
// must not linger as zombies, or libvirt waits on them). Killing it kills
// the whole namespace: that is the teardown, done in t.Cleanup.
//
// The sockets are reachable from the test's own namespaces through plain
// paths under the lab's directory (Lab.LibvirtSocket, Lab.IMDSSocket), so a
// pure-Go libvirt client or virsh (Lab.Virsh) needs no nsenter; commands
// that need the lab's network run through Lab.Command (nsenter --net
// --mount, no PID namespace: the test owns and signals them by PID).
//
// Require skips a test with a message naming what is missing (root,
// libvirtd, virtlogd, qemu-system-x86_64, qemu-img).
package virtlab
