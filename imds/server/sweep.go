package server

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The guest servers' header and idle timeouts are enforced by one coarse
// sweep over their connections rather than by net/http: an http.Server
// with ReadHeaderTimeout or IdleTimeout re-arms a read deadline (a runtime
// timer) two or three times per request, which measured as a good part of
// the gap to a bare handler's GET throughput (BENCHMARKS.md). Here a
// connection only records, with atomics, when it began waiting for a
// request (net/http's ConnState: new or idle) and when the first byte of
// that request arrived (for a new connection: when it was accepted, as
// net/http's ReadHeaderTimeout counts); a sweeper that runs only while there are guest
// connections closes, every sweepEvery, those that
//   - have waited longer than the idle timeout without a byte, or
//   - started a request longer than the header timeout ago and are still
//     waiting for the end of its headers (slowloris).
// A connection in a handler (active) or hijacked (a parked long-poll) is
// not the sweeper's: request bodies have their own deadline
// (bodyDeadline), parked polls their own timeout.
//
// The per-request stamps (idle, first byte) are not read from the clock
// but from the sweeper's own: the time of its last tick (two clock reads
// a request measured ~1 % of a GET's server CPU). A stamp is thus up to
// sweepEvery early, which the sweep allows for: a timeout is enforced
// never early and at most two sweepEvery late (10 s becomes 10-12 s).

// Guest connection timeouts (the sweeper's).
const (
	guestHeaderTimeout = 10 * time.Second
	guestIdleTimeout   = 2 * time.Minute
	guestSweepEvery    = time.Second
)

// connSweeper tracks the guest connections waiting for a request.
type connSweeper struct {
	header, idle, every time.Duration

	// now is the sweeper's clock (unix ns): the time of its last tick, or
	// of the connection that started it.
	now atomic.Int64

	mu      sync.Mutex
	conns   map[*sweptConn]struct{}
	running bool
}

func newConnSweeper(header, idle, every time.Duration) *connSweeper {
	return &connSweeper{header: header, idle: idle, every: every, conns: map[*sweptConn]struct{}{}}
}

// sweptConn is a guest connection under the sweeper. It keeps the socket
// reachable (syscall.Conn) for the dialects' IP TTL and the peer watch.
type sweptConn struct {
	net.Conn
	sw *connSweeper
	// waiting is when the connection began waiting for a request (unix
	// ns), 0 while a request is being served or the connection is not
	// the sweeper's.
	waiting atomic.Int64
	// firstByte is when the first byte arrived since waiting began, 0
	// before.
	firstByte atomic.Int64
}

func (c *sweptConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.firstByte.Load() == 0 && c.waiting.Load() != 0 {
		c.firstByte.Store(c.sw.now.Load())
	}
	return n, err
}

// SyscallConn implements syscall.Conn.
func (c *sweptConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

// listener wraps ln's connections for the sweeper.
func (sw *connSweeper) listener(ln net.Listener) net.Listener { return sweptListener{ln, sw} }

type sweptListener struct {
	net.Listener
	sw *connSweeper
}

func (l sweptListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sweptConn{Conn: c, sw: l.sw}, nil
}

// connState is the http.Server's ConnState hook.
func (sw *connSweeper) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*sweptConn)
	if !ok {
		return
	}
	switch st {
	case http.StateNew:
		// As net/http's ReadHeaderTimeout: a new connection (or one given
		// back after a long-poll) has the header timeout from now for its
		// first request's headers.
		now := time.Now().UnixNano()
		c.firstByte.Store(now)
		c.waiting.Store(now)
		sw.add(c)
	case http.StateIdle:
		c.firstByte.Store(0)
		c.waiting.Store(sw.now.Load())
	case http.StateActive:
		c.waiting.Store(0)
	case http.StateHijacked, http.StateClosed:
		c.waiting.Store(0)
		sw.remove(c)
	}
}

func (sw *connSweeper) add(c *sweptConn) {
	sw.mu.Lock()
	sw.conns[c] = struct{}{}
	if !sw.running {
		sw.running = true
		sw.now.Store(time.Now().UnixNano())
		go sw.run()
	}
	sw.mu.Unlock()
}

func (sw *connSweeper) remove(c *sweptConn) {
	sw.mu.Lock()
	delete(sw.conns, c)
	sw.mu.Unlock()
}

// run sweeps every sw.every until no connection is left.
func (sw *connSweeper) run() {
	t := time.NewTicker(sw.every)
	defer t.Stop()
	var expired []*sweptConn
	for now := range t.C {
		sw.now.Store(now.UnixNano())
		expired = expired[:0]
		sw.mu.Lock()
		if len(sw.conns) == 0 {
			sw.running = false
			sw.mu.Unlock()
			return
		}
		for c := range sw.conns {
			if sw.expired(c, now.UnixNano()) {
				expired = append(expired, c)
				delete(sw.conns, c)
			}
		}
		sw.mu.Unlock()
		for _, c := range expired {
			c.Close()
		}
	}
}

// expired says whether c has waited too long at now (unix ns). Its
// stamps may be up to sw.every early (sw.now's), so it has waited longer
// than a timeout for sure only past the timeout plus sw.every.
func (sw *connSweeper) expired(c *sweptConn, now int64) bool {
	since := c.waiting.Load()
	if since == 0 {
		return false
	}
	if first := c.firstByte.Load(); first != 0 {
		return now-first > int64(sw.header+sw.every)
	}
	return now-since > int64(sw.idle+sw.every)
}
