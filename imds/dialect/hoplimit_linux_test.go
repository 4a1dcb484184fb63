package dialect

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
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

// TestEC2TokenTTLOnTheWire reads the token response's IP header off the
// wire: a raw socket in a private network namespace (netlab, so nothing
// else's traffic is seen) captures the segments, and the one that carries
// the token must have TTL 1 while an ordinary metadata answer has the
// default TTL. Needs root; skipped otherwise.
func TestEC2TokenTTLOnTheWire(t *testing.T) {
	if !netlab.InGuest() {
		netlab.RequireRoot(t)
		netlab.NewNetns(t, netlab.Unique("pwttl")).RunTest(t, "TestEC2TokenTTLOnTheWire", 60*time.Second)
		return
	}

	// In the private namespace (lo is up): capture TCP on lo.
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

// TestEC2TokenOneHopFurther is the hop limit as a client sees it: in
// private namespaces, a guest attached to the host (as a VM's tap) gets
// its token, while a client one routing hop further away (a router
// namespace between it and the host) connects and reads IMDSv1 metadata
// but never receives the token response, whose TTL of 1 expires at the
// router. The namespaces are netlab's; the server listens in the host one
// from this process. Needs root, ip and curl; skipped otherwise.
func TestEC2TokenOneHopFurther(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
	netlab.RequireRoot(t, "curl")
	name := netlab.Unique("pwd")
	host, near, far := netlab.NewNetns(t, name+"-h"), netlab.NewNetns(t, name+"-near"), netlab.NewNetns(t, name+"-far")
	// host (10.200.1.1) -- near (10.200.1.2 | 10.200.2.1, forwards) -- far (10.200.2.2)
	netlab.Veth(t, host, "pwh-h", near, "pwh-n1", "")
	netlab.Veth(t, near, "pwh-n2", far, "pwh-f", "")
	host.IP(t, "addr", "add", "10.200.1.1/24", "dev", "pwh-h")
	host.IP(t, "link", "set", "pwh-h", "up")
	host.IP(t, "route", "add", "10.200.2.0/24", "via", "10.200.1.2")
	near.IP(t, "addr", "add", "10.200.1.2/24", "dev", "pwh-n1")
	near.IP(t, "addr", "add", "10.200.2.1/24", "dev", "pwh-n2")
	near.IP(t, "link", "set", "pwh-n1", "up")
	near.IP(t, "link", "set", "pwh-n2", "up")
	netlab.MustRun(t, near.Argv("sysctl", "-qw", "net.ipv4.ip_forward=1")...)
	far.IP(t, "addr", "add", "10.200.2.2/24", "dev", "pwh-f")
	far.IP(t, "link", "set", "pwh-f", "up")
	far.IP(t, "route", "add", "default", "via", "10.200.2.1")

	h := newHost(t, []string{NameEC2}, Settings{})
	h.register("vm-near", "10.200.1.2", docA())
	h.register("vm-far", "10.200.2.2", docB())
	ln := host.Listen(t, "tcp", "10.200.1.1:80")
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	curl := func(ns *netlab.Netns, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := ns.Command(ctx, append([]string{"curl", "-sS", "--max-time", "3"}, args...)...).CombinedOutput()
		return string(b), err
	}
	const token = "http://10.200.1.1/latest/api/token"
	ttl := "X-aws-ec2-metadata-token-ttl-seconds: 60"
	if out, err := curl(near, "-X", "PUT", "-H", ttl, token); err != nil || len(out) != 40 {
		t.Errorf("token PUT from the attached guest: %q, %v; want a token", out, err)
	}
	if out, err := curl(far, "http://10.200.1.1/latest/meta-data/instance-id"); err != nil || out != "vm-far" {
		t.Errorf("IMDSv1 read one hop further: %q, %v; want vm-far (the path works)", out, err)
	}
	out, err := curl(far, "-X", "PUT", "-H", ttl, token)
	if err == nil {
		t.Errorf("token PUT one hop further succeeded: %q; want no answer (TTL 1 expires at the router)", out)
	}
	t.Logf("token PUT one hop further: %v: %s", err, strings.TrimSpace(out))
}
