package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// keptAliveConn is one guest connection that asks who it is, request
// after request.
type keptAliveConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKeptAlive(t *testing.T, addr string) *keptAliveConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keptAliveConn{t: t, c: c, br: bufio.NewReader(c)}
}

// whoAmI returns the instance id of the answer ("" for a 404) and whether
// the answer closes the connection.
func (k *keptAliveConn) whoAmI() (id string, closes bool) {
	k.t.Helper()
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", api.PathInstance); err != nil {
		k.t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var info api.InstanceInfo
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			k.t.Fatal(err)
		}
		return info.InstanceID, resp.Close
	case http.StatusNotFound:
		return "", resp.Close
	}
	k.t.Fatalf("status %d", resp.StatusCode)
	return "", false
}

// A kept-alive connection never goes on acting as an instance that is
// gone: after a delete, or a re-registration that takes its address
// away, its next request is an unknown caller's (404, Connection: close),
// as a new connection's would be (identifyConn's cached attribution).
func TestKeptAliveConnLosesAGoneIdentity(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)

	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	k := dialKeptAlive(t, ln.Addr().String())
	if id, _ := k.whoAmI(); id != "vm-a" {
		t.Fatalf("attributed to %q, want vm-a", id)
	}
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.2"}})
	if id, closes := k.whoAmI(); id != "" || !closes {
		t.Fatalf("after vm-a moved away: attributed to %q (closes %v), want an unknown caller's 404 that closes", id, closes)
	}

	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"127.0.0.1"}})
	k = dialKeptAlive(t, ln.Addr().String())
	if id, _ := k.whoAmI(); id != "vm-b" {
		t.Fatalf("attributed to %q, want vm-b", id)
	}
	if err := s.Delete(context.Background(), "vm-b"); err != nil {
		t.Fatal(err)
	}
	if id, closes := k.whoAmI(); id != "" || !closes {
		t.Fatalf("after vm-b's delete: attributed to %q (closes %v), want an unknown caller's 404 that closes", id, closes)
	}
}

// On a listener bound to a registered device alone (byDeviceOnly), a
// kept-alive connection whose device instance is deleted is unknown, not
// the instance its source address belongs to.
func TestKeptAliveDeviceConnNeverFallsBackToAddress(t *testing.T) {
	s := newTestServer(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, s, "vm-dev", api.Registration{HostInterface: "tap-vsrv0"})
	mustRegister(t, s, "vm-addr", api.Registration{Addresses: []string{"127.0.0.1"}})
	srv := s.serveBound(ln, "tap-vsrv0", true)
	defer srv.Close()

	k := dialKeptAlive(t, ln.Addr().String())
	if id, _ := k.whoAmI(); id != "vm-dev" {
		t.Fatalf("attributed to %q, want vm-dev", id)
	}
	if err := s.Delete(context.Background(), "vm-dev"); err != nil {
		t.Fatal(err)
	}
	if id, closes := k.whoAmI(); id != "" || !closes {
		t.Fatalf("after vm-dev's delete: attributed to %q (closes %v), want an unknown caller's 404 that closes", id, closes)
	}
}
