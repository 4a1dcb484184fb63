package guestnet

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestConnLimiterNoBoundsIsTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := NewConnLimiter(ConnLimits{PerSource: -1, Registered: -1, Unknown: -1}).Limit(ln, "", false); got != ln {
		t.Fatalf("Limit without bounds = %T, want the listener itself", got)
	}
}

// TestConnLimiter: per-source and unknown-source bounds refuse at accept,
// name the bound refusing, and give the slot back when a connection
// closes.
func TestConnLimiter(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var mu sync.Mutex
	var refused []string
	cl := NewConnLimiter(ConnLimits{
		PerSource: 1,
		Unknown:   1,
		IsRegistered: func(dev string, addr netip.Addr, _ bool) bool {
			return dev == "" && addr == netip.MustParseAddr("127.0.0.1")
		},
		OnRefuse: func(limit string) { mu.Lock(); refused = append(refused, limit); mu.Unlock() },
	})
	ln := cl.Limit(raw, "", false)
	accepted := make(chan net.Conn, 8)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// dialFrom connects from a loopback source address of its own.
	dialFrom := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	acceptedOne := func(what string) net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			t.Cleanup(func() { c.Close() })
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not accepted", what)
			return nil
		}
	}
	// refusedBy: the limiter closed c at accept, naming limit.
	refusedBy := func(what string, c net.Conn, limit string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
			t.Fatalf("%s: read %d, %v; want the connection closed", what, n, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(refused) == 0 || refused[len(refused)-1] != limit {
			t.Fatalf("%s: refusals %v, want %s last", what, refused, limit)
		}
	}

	dialFrom("127.0.0.1")
	first := acceptedOne("first connection of a registered source")
	refusedBy("second connection of one source", dialFrom("127.0.0.1"), LimitPerSource)
	// Closing a connection gives its slot back at once.
	first.Close()
	dialFrom("127.0.0.1")
	acceptedOne("a registered source's connection after its first closed")

	// Unknown sources have a budget of their own, apart from registered ones.
	dialFrom("127.0.0.2")
	acceptedOne("first connection of an unknown source")
	refusedBy("a second unknown source", dialFrom("127.0.0.3"), LimitUnknown)
}
