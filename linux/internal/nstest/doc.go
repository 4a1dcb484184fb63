// Package nstest builds throwaway network namespaces for the Linux
// platform's root tests: a veth pair between a "host" and a "guest"
// namespace, dnsmasq on the host side, and a way to run a test function of
// the same binary inside the guest namespace. Nothing here touches the
// machine's own interfaces.
package nstest
