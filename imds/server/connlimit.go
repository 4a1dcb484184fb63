package server

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// DefaultMaxConnsPerSource bounds the guest connections one source address
// may hold open at once, so that no guest can use up the server's file
// descriptors and starve the others. An agent needs one or two.
const DefaultMaxConnsPerSource = 128

// limitListener refuses (closes at once) a connection whose source
// already holds max open connections on this server. A source is an
// address on a host interface: guests on different devices may share an
// address.
type limitListener struct {
	net.Listener
	s     *Server
	max   int
	iface string
}

type connSource struct {
	iface string
	addr  netip.Addr
}

// connCounts is shared by all guest listeners of a server.
type connCounts struct {
	mu sync.Mutex
	n  map[connSource]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, perr := netip.ParseAddrPort(c.RemoteAddr().String())
		if perr != nil {
			return c, nil
		}
		src := connSource{l.iface, ap.Addr().Unmap().WithZone("")}
		cc := &l.s.conns
		cc.mu.Lock()
		if cc.n[src] >= l.max {
			cc.mu.Unlock()
			c.Close()
			l.s.m.connsRefused.Inc()
			l.s.log.Debug("guest connection refused: too many from one source", "source", src.addr.String(), "hostInterface", src.iface, "limit", l.max)
			continue
		}
		cc.n[src]++
		cc.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			cc.mu.Lock()
			if cc.n[src]--; cc.n[src] <= 0 {
				delete(cc.n, src)
			}
			cc.mu.Unlock()
		}}, nil
	}
}

// limitedConn gives its slot back when closed. It keeps the socket
// reachable (syscall.Conn) for the dialects' IP TTL.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn implements syscall.Conn.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("connection has no socket")
}
