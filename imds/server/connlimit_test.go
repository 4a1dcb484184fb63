package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

func TestMaxConnsPerSource(t *testing.T) {
	s := newTestServer(t, Options{MaxConnsPerSource: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// alive sends a request on c and reports whether it is answered.
	alive := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == 200
	}
	a, b := dial(), dial()
	defer a.Close()
	if !alive(a) || !alive(b) {
		t.Fatal("connections within the limit refused")
	}
	c := dial()
	if alive(c) {
		t.Fatal("a third connection from one source was served")
	}
	c.Close()
	b.Close()
	// The slot comes back once a connection closes.
	for i := 0; ; i++ {
		d := dial()
		ok := alive(d)
		d.Close()
		if ok {
			break
		}
		if i > 100 {
			t.Fatal("slot never released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxParkedPerInstance(t *testing.T) {
	s := newTestServer(t, Options{MaxParkedPerInstance: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	inst := s.get("vm-a")
	park := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s?wait=true&timeout=30 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathConfig)
		return c, bufio.NewReader(c)
	}
	parked := func(n int) {
		t.Helper()
		for i := 0; i < 400; i++ {
			inst.pollMu.Lock()
			got := len(inst.polls)
			inst.pollMu.Unlock()
			if got == n {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("never %d parked", n)
	}
	first, firstR := park()
	defer first.Close()
	parked(1)
	second, _ := park()
	defer second.Close()
	parked(2)
	third, _ := park()
	defer third.Close()
	// The oldest is answered 304 to make room; two stay parked.
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(firstR, nil)
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("oldest poll: %v %v", resp, err)
	}
	parked(2)
}
