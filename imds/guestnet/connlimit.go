package guestnet

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
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
// the registered sources' bound, so callers the server does not know
// (scanners, guests not registered yet) cannot use up what registered
// guests need; all they get is a 404, so a few suffice.
const DefaultMaxUnknownConns = 64

// The bound that refused a connection, as ConnLimits.OnRefuse is told it:
// the serve flag of each bound (and the limit label of
// prewarm_imds_guest_connections_refused_total).
const (
	LimitPerSource  = "max-conns-per-source"
	LimitRegistered = "max-guest-conns"
	LimitUnknown    = "max-unknown-conns"
)

// ConnLimits configure a ConnLimiter. A bound <= 0 is no bound.
type ConnLimits struct {
	// PerSource bounds the open connections of one source: an address on
	// the device-less listener, the device on a device-bound one.
	PerSource int
	// Registered bounds the open connections of registered sources on all
	// listeners together.
	Registered int
	// Unknown bounds the open connections of sources that match no
	// registered instance when they connect, on all listeners together.
	Unknown int
	// IsRegistered says whether a connection from addr arriving on
	// device ("" for the device-less listener) belongs to a registered
	// instance, as the server would attribute a request on it (byDeviceOnly
	// as for BinderOptions.Serve). Nil: every source is unknown.
	IsRegistered func(device string, addr netip.Addr, byDeviceOnly bool) bool
	// OnRefuse, when set, is called with the bound (LimitPerSource, ...)
	// of every refused connection.
	OnRefuse func(limit string)
	// Logger receives a debug line per refused connection; nil discards.
	Logger *slog.Logger
}

// ConnLimiter bounds the open guest connections of all the listeners it
// wraps together. A connection past a bound is closed at accept.
type ConnLimiter struct {
	lim ConnLimits
	log *slog.Logger

	mu      sync.Mutex
	n       map[connSource]int
	total   int // connections of registered sources
	unknown int // connections of sources no instance matched at accept
}

type connSource struct {
	iface string
	addr  netip.Addr // unset on a device-bound listener
}

// NewConnLimiter returns a limiter with the given bounds.
func NewConnLimiter(lim ConnLimits) *ConnLimiter {
	log := lim.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ConnLimiter{lim: lim, log: log, n: map[connSource]int{}}
}

// Limit applies the limiter to a guest listener: ln itself when no bound
// is set. device is the host interface ln is bound to ("" for none);
// byDeviceOnly is as for BinderOptions.Serve.
func (cl *ConnLimiter) Limit(ln net.Listener, device string, byDeviceOnly bool) net.Listener {
	if cl.lim.PerSource <= 0 && cl.lim.Registered <= 0 && cl.lim.Unknown <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, cl: cl, iface: device, byDeviceOnly: byDeviceOnly}
}

// limitListener refuses (closes at once) a connection whose source
// already holds PerSource open connections, or, while all guest listeners
// together hold Registered connections of registered sources, one of a
// registered source, or, while they hold Unknown connections of sources no
// instance matches, one of such a source. On the device-less listener a
// source is an address; on a listener bound to a host device it is the
// device alone: a guest registered by hostInterface keeps its identity
// whatever address it uses, so adding addresses must not add
// connections. Whether a source is registered is decided at accept, as
// the server would attribute a request on the connection then.
type limitListener struct {
	net.Listener
	cl           *ConnLimiter
	iface        string
	byDeviceOnly bool
}

// SourceAddr is the address of a remote "host:port" as instances are
// keyed by it: IPv4-mapped IPv6 unmapped, zone dropped.
func SourceAddr(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

func (l *limitListener) Accept() (net.Conn, error) {
	cl := l.cl
	lim := cl.lim
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := connSource{iface: l.iface}
		addr, ok := SourceAddr(c.RemoteAddr().String())
		if l.iface == "" {
			if !ok {
				return c, nil
			}
			src.addr = addr
		}
		known := lim.IsRegistered != nil && lim.IsRegistered(l.iface, addr, l.byDeviceOnly)
		class := &cl.total // the count this connection adds to
		if !known {
			class = &cl.unknown
		}
		cl.mu.Lock()
		var refused, why string
		var limit int
		switch {
		case lim.PerSource > 0 && cl.n[src] >= lim.PerSource:
			refused, why, limit = LimitPerSource, "too many from one source", lim.PerSource
		case known && lim.Registered > 0 && cl.total >= lim.Registered:
			refused, why, limit = LimitRegistered, "too many guest connections", lim.Registered
		case !known && lim.Unknown > 0 && cl.unknown >= lim.Unknown:
			refused, why, limit = LimitUnknown, "too many connections from sources of no registered instance", lim.Unknown
		}
		if refused != "" {
			cl.mu.Unlock()
			c.Close()
			if lim.OnRefuse != nil {
				lim.OnRefuse(refused)
			}
			cl.log.Debug("guest connection refused: "+why, "source", c.RemoteAddr().String(), "hostInterface", src.iface, "registered", known, "limit", limit)
			continue
		}
		cl.n[src]++
		*class++
		cl.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			cl.mu.Lock()
			if cl.n[src]--; cl.n[src] <= 0 {
				delete(cl.n, src)
			}
			*class--
			cl.mu.Unlock()
		}}, nil
	}
}

// limitedConn gives its slot back when closed. It keeps the socket
// reachable (syscall.Conn) for the dialects' IP TTL and the peer watch.
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
