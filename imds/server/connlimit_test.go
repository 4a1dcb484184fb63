package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
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
	a, b := dial(), dial()
	defer a.Close()
	if !instanceAlive(a) || !instanceAlive(b) {
		t.Fatal("connections within the limit refused")
	}
	c := dial()
	if instanceAlive(c) {
		t.Fatal("a third connection from one source was served")
	}
	c.Close()
	b.Close()
	// The slot comes back once a connection closes.
	for i := 0; ; i++ {
		d := dial()
		ok := instanceAlive(d)
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

// dialFrom connects to addr from the loopback address src (Linux answers
// for all of 127/8; elsewhere the test is skipped).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", src, err)
	}
	return c
}

// instanceAlive sends a guest request on c and reports whether it is
// answered 200.
func instanceAlive(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// On a device-bound listener the per-source bound is per device: a guest
// registered by hostInterface keeps its identity whatever address it
// uses, so more addresses must not buy it more connections.
func TestMaxConnsPerDevice(t *testing.T) {
	s := newTestServer(t, Options{MaxConnsPerSource: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "tap-vm")
	mustRegister(t, s, "vm-tap", api.Registration{HostInterface: "tap-vm"})
	a := dialFrom(t, "127.0.0.1", ln.Addr().String())
	defer a.Close()
	b := dialFrom(t, "127.0.0.2", ln.Addr().String())
	defer b.Close()
	if !instanceAlive(a) || !instanceAlive(b) {
		t.Fatal("connections within the limit refused")
	}
	c := dialFrom(t, "127.0.0.3", ln.Addr().String())
	defer c.Close()
	if instanceAlive(c) {
		t.Fatal("a third connection from the device (from a new address) was served")
	}
}

// MaxGuestConns bounds the connections of all sources together.
func TestMaxGuestConns(t *testing.T) {
	s := newTestServer(t, Options{MaxGuestConns: 2})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"127.0.0.2"}})
	mustRegister(t, s, "vm-3", api.Registration{Addresses: []string{"127.0.0.3"}})
	a := dialFrom(t, "127.0.0.1", ln.Addr().String())
	defer a.Close()
	b := dialFrom(t, "127.0.0.2", ln.Addr().String())
	if !instanceAlive(a) || !instanceAlive(b) {
		t.Fatal("connections within the limit refused")
	}
	c := dialFrom(t, "127.0.0.3", ln.Addr().String())
	if instanceAlive(c) {
		t.Fatal("a connection past MaxGuestConns was served")
	}
	c.Close()
	b.Close()
	for i := 0; ; i++ {
		d := dialFrom(t, "127.0.0.3", ln.Addr().String())
		ok := instanceAlive(d)
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

// A guest that sends a request body slowly is cut off after the body
// timeout, while a long-poll (no body) on the same server outlives it.
func TestGuestSlowBodyTimesOut(t *testing.T) {
	s := newTestServer(t, Options{})
	s.bodyTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(t, s, "vm-a", `{"hostname":"a"}`)

	// A long-poll parked past the body timeout is still answered 304 at
	// its own timeout.
	lp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Close()
	lp.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(lp, "GET %s?wait=true&timeout=1 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nIf-None-Match: \"1\"\r\n\r\n", api.PathConfig)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"seq\":1,", api.PathStatus)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // an error answer, then EOF; or a reset
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow body still held open after %v", time.Since(start))
	}

	resp, err := http.ReadResponse(bufio.NewReader(lp), nil)
	if err != nil {
		t.Fatalf("long-poll: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("long-poll: status %d, want 304", resp.StatusCode)
	}
}

// The body deadline is lifted once the body is in: a store slower than
// the body timeout does not cancel the report, and the connection serves
// the next request.
func TestGuestBodyDeadlineLifted(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s := newTestServer(t, Options{Store: &slowAppendStore{Store: b}})
	s.bodyTimeout = 10 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", api.PathStatus, len(report), report)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: status %d, want 204", resp.StatusCode)
	}
	time.Sleep(50 * time.Millisecond) // past the body timeout, idle
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance)
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request on the connection: %v %v", resp, err)
	}
}
