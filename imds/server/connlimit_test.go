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
	ln := serveGuestLocal(t, s)
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
	waitServed(t, ln.Addr().String(), "slot never released")
}

// waitServed dials addr until a connection is served (bounded): a slot
// the source held has been given back.
func waitServed(t *testing.T, addr, failure string) {
	t.Helper()
	for i := 0; ; i++ {
		d, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ok := instanceAlive(d)
		d.Close()
		if ok {
			return
		}
		if i > 100 {
			t.Fatal(failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxParkedPerInstance(t *testing.T) {
	s := newTestServer(t, Options{MaxParkedPerInstance: 2})
	ln := serveGuestLocal(t, s)
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
	ln := serveGuestLocal(t, s)
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
	ln := serveGuestLocal(t, s)
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
	ln := serveGuestLocal(t, s)
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

// Sources that match no registered instance have their own budget
// (MaxUnknownConns), apart from MaxGuestConns: however many connections
// they open and hold, a registered guest still gets all of its own, and
// an unknown caller within the budget is answered 404 at once and its
// connection closed.
func TestUnknownSourcesOwnBudget(t *testing.T) {
	s := newTestServer(t, Options{MaxGuestConns: 3, MaxUnknownConns: 2})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})

	// Eight unknown sources each open a connection and hold it idle; the
	// listener accepts in order, so the first two take the budget.
	var unknown []net.Conn
	for i := 2; i < 10; i++ {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", i), ln.Addr().String())
		defer c.Close()
		unknown = append(unknown, c)
	}
	for i := 0; i < 3; i++ {
		c := dialFrom(t, "127.0.0.1", ln.Addr().String())
		defer c.Close()
		if !instanceAlive(c) {
			t.Fatalf("registered guest's connection %d of 3 not served while unknown sources hold connections", i+1)
		}
	}
	// Past the registered guests' budget, still refused.
	over := dialFrom(t, "127.0.0.1", ln.Addr().String())
	defer over.Close()
	if instanceAlive(over) {
		t.Fatal("a registered guest's connection past MaxGuestConns was served")
	}
	// An unknown source past the unknown budget was closed at accept,
	// without an answer.
	if code, answered := guestAnswer(unknown[2]); answered {
		t.Fatalf("unknown source past MaxUnknownConns was answered %d", code)
	}
	// One within it is answered 404 and its connection closed.
	c := unknown[0]
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("unknown source within MaxUnknownConns: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Fatalf("unknown source: status %d, close %v; want 404 and the connection closed", resp.StatusCode, resp.Close)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("unknown source's connection still open after the 404: %d %v", n, err)
	}
	// A refused connection is closed before its refusal is counted: the
	// client can see the close first.
	if got := awaitRefused(t, s, "max-unknown-conns", 6); got != 6 {
		t.Fatalf("refused{limit=max-unknown-conns} = %v, want 6", got)
	}
	if got := awaitRefused(t, s, "max-guest-conns", 1); got != 1 {
		t.Fatalf("refused{limit=max-guest-conns} = %v, want 1", got)
	}
}

// awaitRefused reads refusedCount until it is want, for at most 5 s, and
// returns the last value read.
func awaitRefused(t *testing.T, s *Server, limit string, want float64) float64 {
	t.Helper()
	got := refusedCount(t, s, limit)
	for deadline := time.Now().Add(5 * time.Second); got != want && time.Now().Before(deadline); got = refusedCount(t, s, limit) {
		time.Sleep(5 * time.Millisecond)
	}
	return got
}

// guestAnswer sends a guest request on c and returns the status of the
// answer, if one came before the connection ended.
func guestAnswer(c net.Conn) (int, bool) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	return resp.StatusCode, true
}

// refusedCount reads prewarm_imds_guest_connections_refused_total for
// one limit.
func refusedCount(t *testing.T, s *Server, limit string) float64 {
	t.Helper()
	return s.m.connsRefused.WithLabelValues(limit).Value()
}

// On a device-bound listener a source is registered when its device is,
// whatever address it calls from, so a guest registered by hostInterface
// never counts against MaxUnknownConns; a device no instance has is
// unknown.
func TestUnknownBudgetByDevice(t *testing.T) {
	s := newTestServer(t, Options{MaxUnknownConns: 1})
	known, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(known, "tap-vm")
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(other, "tap-none")
	mustRegister(t, s, "vm-tap", api.Registration{HostInterface: "tap-vm"})

	idle := dialFrom(t, "127.0.0.4", other.Addr().String()) // takes the unknown budget
	defer idle.Close()
	refused := dialFrom(t, "127.0.0.5", other.Addr().String())
	defer refused.Close()
	if code, answered := guestAnswer(refused); answered {
		t.Fatalf("a second unknown device connection was answered %d", code)
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		c := dialFrom(t, src, known.Addr().String())
		defer c.Close()
		if !instanceAlive(c) {
			t.Fatalf("guest registered by hostInterface, calling from %s, not served", src)
		}
	}
}
