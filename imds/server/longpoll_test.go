package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// TestHijackedLongPolls runs long-polls over real connections, where they
// are hijacked and parked without a goroutine.
func TestHijackedLongPolls(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	url := "http://" + ln.Addr().String() + api.PathConfig

	type res struct {
		code        int
		etag, body  string
		connClose   bool
		err         error
		took        time.Duration
		contentType string
	}
	get := func(query, inm string) chan res {
		ch := make(chan res, 1)
		go func() {
			req, _ := http.NewRequest("GET", url+"?"+query, nil)
			req.Header.Set("Metadata", "true")
			if inm != "" {
				req.Header.Set("If-None-Match", inm)
			}
			start := time.Now()
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				ch <- res{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- res{resp.StatusCode, resp.Header.Get("ETag"), string(b), resp.Close, nil, time.Since(start), resp.Header.Get("Content-Type")}
		}()
		return ch
	}
	recv := func(ch chan res) res {
		t.Helper()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("long-poll not answered")
		}
		return res{}
	}
	waitParked := func(n int) {
		t.Helper()
		for i := 0; i < 400; i++ {
			s.get("vm-a").pollMu.Lock()
			got := len(s.get("vm-a").polls)
			s.get("vm-a").pollMu.Unlock()
			if got == n {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%d polls never parked", n)
	}

	// More polls than are answered inline: the workers answer them.
	const n = 3 * inlinePolls
	chs := make([]chan res, n)
	for i := range chs {
		chs[i] = get("wait=true&timeout=20", "")
	}
	waitParked(n)
	if g := gaugeValue(s, "guest"); g != n {
		t.Fatalf("parked gauge %v, want %d", g, n)
	}
	mustPublish(t, s, "vm-a", `{"hostname":"one"}`)
	for _, ch := range chs {
		r := recv(ch)
		if r.code != 200 || r.etag != tag(s, 1) || !strings.Contains(r.body, `"hostname":"one"`) || r.connClose || r.contentType != api.ContentTypeJSON {
			t.Fatalf("%+v", r)
		}
	}
	if g := gaugeValue(s, "guest"); g != 0 {
		t.Fatalf("parked gauge %v after answers", g)
	}

	// 304 at the timeout, with the current ETag.
	r := recv(get("wait=true&timeout=0.3", `"1"`))
	if r.code != 304 || r.etag != tag(s, 1) || r.took < 300*time.Millisecond {
		t.Fatalf("timeout: %+v", r)
	}

	// A re-registration is not a new generation.
	ch := get("wait=true&timeout=20", `"1"`)
	waitParked(1)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}, Labels: map[string]string{"a": "b"}})
	select {
	case r := <-ch:
		t.Fatalf("answered by a re-registration: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	mustPublish(t, s, "vm-a", `{"hostname":"two"}`)
	if r := recv(ch); r.code != 200 || r.etag != tag(s, 2) {
		t.Fatalf("%+v", r)
	}

	// Delete answers 404.
	ch = get("wait=true&timeout=20", `"2"`)
	waitParked(1)
	inst := s.get("vm-a")
	if err := s.Delete(context.Background(), "vm-a"); err != nil {
		t.Fatal(err)
	}
	if r := recv(ch); r.code != 404 || !strings.Contains(r.body, "unknown instance") {
		t.Fatalf("after delete: %+v", r)
	}
	if len(inst.polls) != 0 {
		t.Fatal("polls left on a deleted instance")
	}

	// Shutdown answers 304.
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	ch = get("wait=true&timeout=20", "")
	waitParked(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := recv(ch); r.code != 304 {
		t.Fatalf("after shutdown: %+v", r)
	}
}

// TestParkedPollsHoldNoGoroutines guards the design: a parked long-poll
// costs a record, not goroutines.
func TestParkedPollsHoldNoGoroutines(t *testing.T) {
	s := newTestServer(t, Options{MaxParkedPerInstance: -1})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	inst := s.get("vm-a")
	before := runtime.NumGoroutine()
	const n = 100
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s?wait=true&timeout=30 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathConfig)
		conns[i] = c
	}
	for i := 0; ; i++ {
		inst.pollMu.Lock()
		got := len(inst.polls)
		inst.pollMu.Unlock()
		if got == n {
			break
		}
		if i > 400 {
			t.Fatalf("%d of %d parked", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Let the connection goroutines finish after their hijack.
	time.Sleep(50 * time.Millisecond)
	if d := runtime.NumGoroutine() - before; d > 10 {
		t.Fatalf("%d parked polls hold %d goroutines", n, d)
	}
	mustPublish(t, s, "vm-a", `{}`)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	}
}

// TestAbandonedPollReleased: a guest that closes its connection while
// parked is released at once (Linux), not at the poll's timeout.
func TestAbandonedPollReleased(t *testing.T) {
	s := newTestServer(t, Options{MaxConnsPerSource: 1})
	if s.peers == nil {
		t.Skip("parked connections are not watched on this OS")
	}
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	inst := s.get("vm-a")
	count := func() int {
		inst.pollMu.Lock()
		defer inst.pollMu.Unlock()
		return len(inst.polls)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s?wait=true&timeout=300 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathConfig)
	for i := 0; count() != 1; i++ {
		if i > 400 {
			t.Fatal("never parked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	for i := 0; count() != 0 || gaugeValue(s, "guest") != 0; i++ {
		if i > 400 {
			t.Fatalf("abandoned poll still parked (%d, gauge %v)", count(), gaugeValue(s, "guest"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The connection slot is free again too: the source's only one.
	waitServed(t, ln.Addr().String(), "connection slot of the abandoned poll still held")
}
