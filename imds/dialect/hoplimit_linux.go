package dialect

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// setHopLimit makes every packet c sends from now on leave with the IP TTL
// (IPv4) and unicast hop limit (IPv6) hops. It is not restored after the
// token response: segments of that response may still sit in the send
// queue or be retransmitted after the handler returns, and each later
// packet on the connection goes to the same peer, which the token reached.
func setHopLimit(c net.Conn, hops int) error {
	if c == nil {
		return errors.New("set IP TTL: the connection is unknown (the http.Server lacks dialect.ConnContext)")
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("set IP TTL: connection type %T has no socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("set IP TTL: %w", err)
	}
	var err4, err6 error
	if err := raw.Control(func(fd uintptr) {
		// An AF_INET6 socket carrying IPv4-mapped traffic takes the IPv4
		// TTL for it, so a v6 socket gets both.
		err4 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, hops)
		err6 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, hops)
	}); err != nil {
		return fmt.Errorf("set IP TTL: %w", err)
	}
	if err4 != nil && err6 != nil {
		return fmt.Errorf("set IP TTL %d: %w", hops, err4)
	}
	return nil
}
