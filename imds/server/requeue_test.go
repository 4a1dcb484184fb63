package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// An answered long-poll keeps its connection, as HTTP/1.1 allows: a 304 at
// the timeout and a 200 on a publish come without `Connection: close`, and
// the guest's next requests are served on the same connection. A guest
// that asks to close, and every answer at shutdown, get `Connection:
// close` and a closed connection.
func TestAnsweredPollKeepsConnection(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(t, s, "vm-a", `{"hostname":"one"}`)

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	send := func(c net.Conn, query, inm, extra string) {
		t.Helper()
		req := fmt.Sprintf("GET %s?%s HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n", api.PathConfig, query)
		if inm != "" {
			req += "If-None-Match: " + inm + "\r\n"
		}
		if _, err := io.WriteString(c, req+extra+"\r\n"); err != nil {
			t.Fatalf("send on the connection: %v", err)
		}
	}
	read := func(c net.Conn, br *bufio.Reader) (*http.Response, string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	waitParked := func(n int) {
		t.Helper()
		for range 2000 {
			inst := s.get("vm-a")
			inst.pollMu.Lock()
			got := len(inst.polls)
			inst.pollMu.Unlock()
			if got == n {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%d polls never parked", n)
	}

	// 304 at the timeout.
	send(conn, "wait=true&timeout=0.2", tag(s, 1), "")
	if resp, _ := read(conn, br); resp.StatusCode != http.StatusNotModified || resp.Close {
		t.Fatalf("timeout answer: %d, Connection: close %v; want 304 keeping the connection", resp.StatusCode, resp.Close)
	}
	// The next poll on the same connection parks and a publish answers it.
	send(conn, "wait=true&timeout=20", tag(s, 1), "")
	waitParked(1)
	mustPublish(t, s, "vm-a", `{"hostname":"two"}`)
	resp, body := read(conn, br)
	if resp.StatusCode != http.StatusOK || resp.Close || !strings.Contains(body, `"hostname":"two"`) {
		t.Fatalf("publish answer: %d, Connection: close %v, %s; want 200 keeping the connection", resp.StatusCode, resp.Close, body)
	}
	// A plain GET on it still.
	send(conn, "", "", "")
	if resp, body := read(conn, br); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"hostname":"two"`) {
		t.Fatalf("third request on the connection: %d %s", resp.StatusCode, body)
	}

	// A guest that asks to close gets that.
	send(conn, "wait=true&timeout=0.2", tag(s, 2), "Connection: close\r\n")
	if resp, _ := read(conn, br); resp.StatusCode != http.StatusNotModified || !resp.Close {
		t.Fatalf("answer to Connection: close: %d, close %v; want 304 closing", resp.StatusCode, resp.Close)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after a closing answer: read %d bytes, %v; want EOF", n, err)
	}

	// At shutdown a parked poll is answered 304 and its connection closed.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	send(c2, "wait=true&timeout=20", tag(s, 2), "")
	waitParked(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, _ := read(c2, br2); resp.StatusCode != http.StatusNotModified || !resp.Close {
		t.Fatalf("shutdown answer: %d, close %v; want 304 closing", resp.StatusCode, resp.Close)
	}
}
