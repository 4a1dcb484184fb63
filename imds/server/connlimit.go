package server

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxConnsPerSource bounds the guest connections one source may
// hold open at once, so that no guest can use up the server's file
// descriptors and starve the others. An agent needs one or two.
const DefaultMaxConnsPerSource = 128

// DefaultMaxGuestConns bounds the guest connections of all registered
// sources together, so that many sources (guests, or one guest on many
// devices) cannot use up the server's file descriptors either.
const DefaultMaxGuestConns = 8192

// DefaultMaxUnknownConns bounds the guest connections of all sources that
// match no registered instance together. They count against it instead of
// MaxGuestConns, so callers the server does not know (scanners, guests
// not registered yet) cannot use up what registered guests need; all they
// get is a 404, so a few suffice.
const DefaultMaxUnknownConns = 64

// DefaultGuestBodyTimeout bounds how long a guest may take to send a
// request body (a status report), measured from the end of its headers.
// It applies only to requests with a body, so long-polls are unaffected.
const DefaultGuestBodyTimeout = 30 * time.Second

// limitListener refuses (closes at once) a connection whose source
// already holds max open connections on this server, or, while all guest
// listeners together hold total connections of registered sources, one
// of a registered source, or, while they hold unknown connections of
// sources no instance matches, one of such a source. On the device-less
// listener a source is an address; on a listener bound to a host device
// it is the device alone: a guest registered by hostInterface keeps its
// identity whatever address it uses, so adding addresses must not add
// connections. Whether a source is registered is decided at accept, as
// identify would attribute a request on the connection then.
type limitListener struct {
	net.Listener
	s            *Server
	max          int // per source; <= 0: no bound
	total        int // registered sources, all guest listeners; <= 0: no bound
	unknown      int // unknown sources, all guest listeners; <= 0: no bound
	iface        string
	byDeviceOnly bool // as the listener's requests are attributed (lookup)
}

type connSource struct {
	iface string
	addr  netip.Addr // unset on a device-bound listener
}

// connCounts is shared by all guest listeners of a server.
type connCounts struct {
	mu      sync.Mutex
	n       map[connSource]int
	total   int // connections of registered sources
	unknown int // connections of sources no instance matched at accept
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := connSource{iface: l.iface}
		addr, ok := sourceAddr(c.RemoteAddr().String())
		if l.iface == "" {
			if !ok {
				return c, nil
			}
			src.addr = addr
		}
		known := l.s.lookup(l.iface, addr, l.byDeviceOnly) != nil
		cc := &l.s.conns
		class := &cc.total // the count this connection adds to
		if !known {
			class = &cc.unknown
		}
		cc.mu.Lock()
		var refused, why string
		var limit int
		switch {
		case l.max > 0 && cc.n[src] >= l.max:
			refused, why, limit = limitPerSource, "too many from one source", l.max
		case known && l.total > 0 && cc.total >= l.total:
			refused, why, limit = limitGuestTotal, "too many guest connections", l.total
		case !known && l.unknown > 0 && cc.unknown >= l.unknown:
			refused, why, limit = limitUnknownTotal, "too many connections from sources of no registered instance", l.unknown
		}
		if refused != "" {
			cc.mu.Unlock()
			c.Close()
			l.s.m.connsRefused.WithLabelValues(refused).Inc()
			l.s.log.Debug("guest connection refused: "+why, "source", c.RemoteAddr().String(), "hostInterface", src.iface, "registered", known, "limit", limit)
			continue
		}
		cc.n[src]++
		*class++
		cc.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			cc.mu.Lock()
			if cc.n[src]--; cc.n[src] <= 0 {
				delete(cc.n, src)
			}
			*class--
			cc.mu.Unlock()
		}}, nil
	}
}

// The limit label values of prewarm_imds_guest_connections_refused_total:
// the serve flag of each bound.
const (
	limitPerSource    = "max-conns-per-source"
	limitGuestTotal   = "max-guest-conns"
	limitUnknownTotal = "max-unknown-conns"
)

// bodyDeadline bounds the time a guest request's body may take to
// arrive (slow POST bodies would otherwise hold a connection and a
// goroutine for ever). Requests without a body, long-polls among them,
// are left alone. net/http lifts the deadline itself once the body has
// been read (to watch for the peer closing), so a slow store does not
// cancel the request.
func bodyDeadline(timeout time.Duration, h http.Handler) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		h.ServeHTTP(w, r)
	})
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
