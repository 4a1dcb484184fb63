package guestnet

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerWatch tells when the guest behind a parked (hijacked) long-poll goes
// away, so its descriptor is freed then and not at the poll's timeout.
// One epoll set with EPOLLRDHUP|EPOLLONESHOT per connection, one goroutine
// blocked in epoll_wait for all of them; an eventfd wakes it to stop. The
// goroutine starts with the first Watch: epoll_wait is a blocking system
// call, which holds an OS thread of its own for as long as it waits, so a
// service that parks no poll keeps no thread for it (issue 15).
type PeerWatch struct {
	epfd, evfd int

	mu      sync.Mutex
	next    uint64
	cbs     map[uint64]func()
	closed  bool
	started bool // the loop runs (w.mu)
	done    chan struct{}
}

// NewPeerWatch makes a watch (its goroutine starts with the first Watch);
// Close ends it.
func NewPeerWatch() (*PeerWatch, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// id 0 is the eventfd.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &PeerWatch{epfd: epfd, evfd: evfd, cbs: map[uint64]func(){}, next: 1, done: make(chan struct{})}, nil
}

func evID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func (w *PeerWatch) loop() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for i := range events[:n] {
			id := evID(&events[i])
			if id == 0 {
				return // stop
			}
			w.mu.Lock()
			cb := w.cbs[id]
			delete(w.cbs, id)
			w.mu.Unlock()
			if cb != nil {
				go cb()
			}
		}
	}
}

// Watch calls gone (once, on its own goroutine) when the peer of c closes
// or resets the connection. The returned unwatch must be called before c
// is closed; after it gone is not called.
func (w *PeerWatch) Watch(c net.Conn, gone func()) (unwatch func(), err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("connection type %T has no socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	// epoll_ctl runs under w.mu so that close cannot free epfd meanwhile.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("peer watch closed")
	}
	id := w.next
	w.next++
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || cerr != nil {
		return nil, errors.Join(err, cerr)
	}
	w.cbs[id] = gone
	if !w.started {
		w.started = true
		go w.loop()
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.cbs, id)
		if !w.closed {
			raw.Control(func(fd uintptr) {
				unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			})
		}
	}, nil
}

// Close ends the watch: no gone is started after it returns.
func (w *PeerWatch) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	// Nobody touches epfd once closed is set, but the loop may still need
	// w.mu to finish its batch.
	w.closed = true
	started := w.started
	w.mu.Unlock()
	if started {
		unix.Write(w.evfd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-w.done
	}
	unix.Close(w.epfd)
	unix.Close(w.evfd)
}
