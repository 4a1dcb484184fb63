package server

import (
	"net"
	"sync"
)

// A parked long-poll is hijacked from net/http (longpoll.go). Once it is
// answered (200, or 304 at its timeout) its connection goes back to the
// http.Server that served it, through that server's listener, as HTTP/1.1
// keep-alive allows: the guest's next request, the next long-poll, comes
// on the same connection instead of a new dial. net/http serves a
// returned connection as it serves an accepted one (its first request's
// headers within the header timeout, sweep.go, which a guest polling again
// at once meets;
// one that waits longer finds the connection closed and dials again, as
// after any idle close).

// requeueListener is a guest listener that also hands out the
// connections given back with requeue.
type requeueListener struct {
	net.Listener
	accepted chan acceptResult
	start    sync.Once
	done     chan struct{} // closed by Close
	mu       sync.Mutex    // orders requeue and Close
	closed   bool
	back     chan net.Conn // given back, not yet served again
}

// requeueBacklog bounds the connections given back and not yet served
// again; past it one is closed (its guest dials again). A fan-out answering
// thousands of polls at once outpaces net/http's accept loop only briefly.
const requeueBacklog = 1024

type acceptResult struct {
	c   net.Conn
	err error
}

func newRequeueListener(ln net.Listener) *requeueListener {
	return &requeueListener{Listener: ln, back: make(chan net.Conn, requeueBacklog), accepted: make(chan acceptResult), done: make(chan struct{})}
}

// Accept returns the next connection accepted or given back.
func (l *requeueListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.back:
		return c, nil
	case r := <-l.accepted:
		return r.c, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts from the listener until it is closed.
func (l *requeueListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil {
			// net/http ends Serve on a permanent error and retries a
			// temporary one by calling Accept again: so do we.
			if ne, ok := err.(interface{ Temporary() bool }); !ok || !ne.Temporary() {
				return
			}
		}
	}
}

// Close closes the listener; connections given back afterwards are
// closed.
func (l *requeueListener) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	for drained := false; !drained; {
		select {
		case c := <-l.back:
			c.Close()
		default:
			drained = true
		}
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// requeue gives c back to be served again, or closes it when the listener
// is closed or its backlog full. It never blocks.
func (l *requeueListener) requeue(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return
	}
	select {
	case l.back <- c:
	default:
		c.Close()
	}
}
