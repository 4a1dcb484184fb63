package dialect

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSetHopLimit checks the socket option on the server side of a token
// response's connection.
func TestSetHopLimit(t *testing.T) {
	conns := make(chan net.Conn, 4)
	h := newHost(t, []string{NameEC2}, Settings{})
	fleet(h)
	srv := h.startWith(t, func(ctx context.Context, c net.Conn) context.Context {
		conns <- c
		return ConnContext(ctx, c)
	})
	cl := clientFrom(t, addrA)
	code, _, _ := do(t, cl, "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if code != 200 {
		t.Fatalf("token PUT: %d", code)
	}
	c := <-conns
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ttl int
	var gerr error
	raw.Control(func(fd uintptr) { ttl, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL) })
	if gerr != nil || ttl != 1 {
		t.Errorf("IP_TTL of the token response's connection = %d (%v), want 1", ttl, gerr)
	}
	if err := setHopLimit(nil, 1); err == nil {
		t.Error("setHopLimit(nil) = nil, want an error")
	}
}

// TestEC2TokenWithoutConnIsRefused checks that a token is not issued when
// its hop limit cannot be set (no ConnContext): failing closed.
func TestEC2TokenWithoutConnIsRefused(t *testing.T) {
	h := newHost(t, []string{NameEC2}, Settings{})
	fleet(h)
	srv := h.startWith(t, nil)
	code, _, _ := do(t, clientFrom(t, addrA), "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if code != 500 {
		t.Errorf("token PUT without the connection: %d, want 500", code)
	}
}

const netnsEnv = "PREWARM_DIALECT_IN_NETNS"

// TestEC2TokenTTLOnTheWire reads the token response's IP header off the
// wire: a raw socket in a private network namespace (unshare -n, so
// nothing else's traffic is seen) captures the segments, and the one that
// carries the token must have TTL 1 while an ordinary metadata answer has
// the default TTL. Needs root and unshare(1); skipped otherwise.
func TestEC2TokenTTLOnTheWire(t *testing.T) {
	if os.Getenv(netnsEnv) != "1" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace and a raw socket")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs unshare(1)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, unshare, "--net", os.Args[0], "-test.run=^TestEC2TokenTTLOnTheWire$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a private network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("netns run: %v", err)
		}
		return
	}

	// In the private namespace: bring lo up, capture TCP on it.
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	h := newHost(t, []string{NameEC2}, Settings{})
	fleet(h)
	srv := h.start(t)
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)

	cl := clientFrom(t, addrA)
	code, _, tok := do(t, cl, "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if code != 200 {
		t.Fatalf("token PUT: %d", code)
	}
	// An IMDSv1 read on a fresh connection, for contrast.
	plain := clientFrom(t, addrA)
	plain.Transport.(*http.Transport).DisableKeepAlives = true
	code, _, body := do(t, plain, "GET", srv.URL+"/latest/meta-data/local-hostname", nil)
	if code != 200 || body != "web-a" {
		t.Fatalf("IMDSv1 read: %d %q", code, body)
	}

	tokenTTL, plainTTL := -1, -1
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 1000 && time.Now().Before(deadline) && (tokenTTL < 0 || plainTTL < 0); i++ {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // receive timeout: poll again until the deadline
		}
		pkt := buf[:n]
		if n < 20 || pkt[0]>>4 != 4 {
			continue
		}
		ihl := int(pkt[0]&0x0f) * 4
		if n < ihl+20 || int(binary.BigEndian.Uint16(pkt[ihl:])) != port {
			continue // not from the server
		}
		payload := pkt[ihl+int(pkt[ihl+12]>>4)*4:]
		switch {
		case bytes.Contains(payload, []byte(tok)):
			tokenTTL = int(pkt[8])
		case bytes.HasSuffix(payload, []byte("\r\n\r\nweb-a")):
			plainTTL = int(pkt[8])
		}
	}
	t.Logf("token response TTL %d, IMDSv1 response TTL %d", tokenTTL, plainTTL)
	if tokenTTL != 1 {
		t.Errorf("token response left with TTL %d, want 1", tokenTTL)
	}
	if plainTTL <= 1 {
		t.Errorf("an ordinary response left with TTL %d, want the default", plainTTL)
	}
}
