package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// startSweptGuest serves a guest listener whose header and idle timeouts
// are header and idle, swept every 20 ms, with vm-a published for
// 127.0.0.1.
func startSweptGuest(t *testing.T, header, idle time.Duration) string {
	t.Helper()
	s := newTestServer(t, Options{})
	s.sweeper = newConnSweeper(header, idle, 20*time.Millisecond)
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(t, s, "vm-a", `{"hostname":"a"}`)
	return ln.Addr().String()
}

// closedByServer says whether the server closed c: a read ends with EOF or
// a reset before the client's own 10 s deadline.
func closedByServer(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("still open after 10 s")
	}
	return nil
}

// A client that sends its request headers a byte at a time (slowloris)
// is cut at the header timeout although bytes keep coming; so is one that
// connects and sends nothing.
func TestGuestSlowHeadersCut(t *testing.T) {
	addr := startSweptGuest(t, 200*time.Millisecond, time.Minute)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- closedByServer(c) }()
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nX-Slow: %0100d\r\n\r\n", api.PathConfig, 0)
	cut := false
	sent := 0
	for !cut && sent < len(req) {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			cut = true
			continue
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.Write([]byte{req[sent]}); err != nil {
			cut = true // reset by the server
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			continue
		}
		sent++
	}
	if !cut {
		t.Fatalf("all %d bytes of the headers sent at 20/s and the connection is still open", sent)
	}

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := closedByServer(silent); err != nil {
		t.Fatalf("a connection that sends nothing: %v", err)
	}
}

// A kept-alive connection serves requests across many sweeps while it is
// busy or idle for less than the idle timeout, and is closed once idle
// longer; a request whose handler outlasts the header timeout (a parked
// long-poll) is answered, not cut.
func TestGuestIdleConnSwept(t *testing.T) {
	addr := startSweptGuest(t, 300*time.Millisecond, 700*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	etag := ""
	get := func(path, inm string) int {
		t.Helper()
		h := ""
		if inm != "" {
			h = "If-None-Match: " + inm + "\r\n"
		}
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n%s\r\n", path, h); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			etag = resp.Header.Get("ETag")
		}
		return resp.StatusCode
	}
	for range 5 { // 5 x 200 ms idle: past the header timeout, under the idle one
		if code := get(api.PathConfig, ""); code != http.StatusOK {
			t.Fatalf("GET: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A parked long-poll of 1 s (past both timeouts) is answered 304.
	resp := get(api.PathConfig+"?wait=true&timeout=1", etag)
	if resp != http.StatusNotModified {
		t.Fatalf("long-poll: %d, want 304", resp)
	}
	if code := get(api.PathConfig, ""); code != http.StatusOK {
		t.Fatalf("GET after the long-poll: %d", code)
	}
	if err := closedByServer(c); err != nil {
		t.Fatalf("idle past the idle timeout: %v", err)
	}
}
