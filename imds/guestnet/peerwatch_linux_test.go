package guestnet

import (
	"net"
	"testing"
	"time"
)

// pair is a loopback TCP connection: the client end and the accepted end.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestPeerWatch(t *testing.T) {
	w, err := NewPeerWatch()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// The peer closes: gone is called, once.
	client, server := pair(t)
	gone := make(chan struct{}, 2)
	unwatch, err := w.Watch(server, func() { gone <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
		t.Fatal("gone called while the peer is still there")
	case <-time.After(50 * time.Millisecond):
	}
	client.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("gone never called after the peer closed")
	}
	unwatch()

	// Unwatched first: gone is not called when the peer goes.
	client2, server2 := pair(t)
	gone2 := make(chan struct{}, 1)
	unwatch2, err := w.Watch(server2, func() { gone2 <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	unwatch2()
	client2.Close()
	select {
	case <-gone2:
		t.Fatal("gone called after unwatch")
	case <-time.After(200 * time.Millisecond):
	}

	// A closed watch refuses new connections.
	w.Close()
	_, server3 := pair(t)
	if _, err := w.Watch(server3, func() {}); err == nil {
		t.Fatal("Watch on a closed PeerWatch succeeded")
	}
	select {
	case <-gone:
		t.Fatal("gone called twice")
	default:
	}
}

// The watch's goroutine (blocked in epoll_wait, an OS thread of its own)
// starts with the first Watch, not with NewPeerWatch; a watch that never
// watched closes without it.
func TestPeerWatchStartsWithFirstWatch(t *testing.T) {
	idle, err := NewPeerWatch()
	if err != nil {
		t.Fatal(err)
	}
	idle.Close() // returns although no loop ever ran
	w, err := NewPeerWatch()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	running := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.started
	}
	if running() {
		t.Fatal("the epoll goroutine runs before anything is watched")
	}
	client, server := pair(t)
	gone := make(chan struct{}, 1)
	if _, err := w.Watch(server, func() { gone <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if !running() {
		t.Fatal("the epoll goroutine is not running after Watch")
	}
	client.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("gone never called after the peer closed")
	}
}
