// Package netlab is the repository's one network-namespace test harness:
// every root test that needs a network of its own (e2e, linux/dhcp,
// linux/netmon, linux/network, the IMDS and its dialects) builds it here.
//
// The pieces, each cleaned up by t.Cleanup and every process by its PID:
//
//   - RequireRoot / Require: skip, naming the apt package, when the test is
//     not root or a tool is missing.
//   - Netns: a named network namespace (NewNetns), commands in it (IP,
//     Command), sockets made in it from this process (Dial, Listen, Do).
//   - Veth: a veth pair between two namespaces.
//   - Dnsmasq: a DHCP server in the foreground on the host side, with
//     private lease, PID, reservation and log files (--no-ping: without it
//     every first lease takes 3 s); SetHosts re-maps reservations and
//     returns once dnsmasq has re-read them.
//   - DHCPClient: dhclient, dhcpcd or busybox udhcpc with private hook,
//     lease, PID and config files, so none writes the machine's
//     resolv.conf or hostname.
//   - Proc: a supervised process whose output lines a test can wait for.
//   - StartTest / RunTest: a test function of the same binary re-run
//     inside a namespace (under `ip netns exec`, which also gives it a
//     private mount namespace); InGuest tells the two sides apart.
//   - Pair: the common shape of the platform tests: a host and a guest
//     namespace joined by vh0 ↔ eth0, 10.77.0.1/24 and 169.254.169.254 on
//     the host end.
//
// It imports neither half of the repository, so any test may use it; the
// machine's own interfaces are never touched.
package netlab
