package main

// hostInterface identity, tested in network namespaces this test creates:
// a host namespace running prewarm-imds and one guest namespace per veth.
// Needs root; it skips (saying why) where namespaces cannot be made. It
// never touches the machine's own network namespace.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

// nsGet sends a guest GET from namespace ns.
func nsGet(t *testing.T, ns *netlab.Netns, path string) (int, string) {
	t.Helper()
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return ns.Dial(ctx, "tcp", "169.254.169.254:80")
		},
	}
	req, _ := http.NewRequest("GET", "http://169.254.169.254"+path, nil)
	req.Header.Set("Metadata", "true")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, ns.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// veth links guest namespace ns to the host namespace with host-side
// device vh on subnet sub (.1 host, .2 guest).
func veth(t *testing.T, host, ns *netlab.Netns, vh, sub string) {
	t.Helper()
	netlab.Veth(t, host, vh, ns, "eth0", "")
	host.IP(t, "addr", "add", sub+".1/24", "dev", vh)
	host.IP(t, "link", "set", vh, "up")
	ns.IP(t, "addr", "add", sub+".2/24", "dev", "eth0")
	ns.IP(t, "link", "set", "eth0", "up")
	ns.IP(t, "route", "add", "169.254.169.254/32", "via", sub+".1")
}

func TestNetnsHostInterfaceIdentity(t *testing.T) {
	netlab.RequireRoot(t)
	tag := fmt.Sprintf("%04x", rand.IntN(0x10000))
	vh1, vh2, vh3 := "pwi1"+tag, "pwi2"+tag, "pwi3"+tag
	name := netlab.Unique("pwi")
	host, g1, g2 := netlab.NewNetns(t, name+"-h"), netlab.NewNetns(t, name+"-g1"), netlab.NewNetns(t, name+"-g2")
	host.IP(t, "addr", "add", "169.254.169.254/32", "dev", "lo")
	veth(t, host, g2, vh2, "10.201.2")

	// The server binds registered host interfaces by itself, and the
	// static --guest-interface ones, as their devices come and go.
	dir := t.TempDir()
	socket := filepath.Join(dir, "admin.sock")
	out := &logWriter{t: t}
	cmd := exec.Command("ip", "netns", "exec", host.Name, binPath, "serve",
		"--listen", "169.254.169.254:80", "--guest-interface", vh3,
		"--admin-socket", socket, "--data-dir", filepath.Join(dir, "data"), "--rate", "0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.mu.Lock()
		out.done = true
		out.mu.Unlock()
	})
	c := client.NewUnix(socket)
	for i := 0; ; i++ {
		if err := c.Healthz(ctx(t)); err == nil {
			break
		} else if i > 250 {
			t.Fatalf("server in %s not ready: %v", host.Name, err)
		}
		select {
		case <-exited:
			t.Fatalf("server exited: %v", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// vm-a is known by its host interface only, registered before its
	// device exists (the VM has not started); vm-b by its address.
	if _, err := c.Register(ctx(t), "vm-a", api.Registration{HostInterface: vh1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx(t), "vm-b", api.Registration{Addresses: []string{"10.201.2.2"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"vm-a", "vm-b"} {
		if _, err := c.Publish(ctx(t), id, []byte(`{"hostname":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	identity := func(ns *netlab.Netns) string {
		code, body := nsGet(t, ns, api.PathInstance)
		if code == 404 && strings.Contains(body, "unknown instance") {
			return ""
		}
		var info api.InstanceInfo
		if code != 200 || json.Unmarshal([]byte(body), &info) != nil {
			t.Fatalf("from %s: %d %s", ns.Name, code, body)
		}
		return info.InstanceID
	}
	// expect waits (bounded) for the binder to follow a change.
	expect := func(ns *netlab.Netns, want string) {
		t.Helper()
		var got string
		for i := 0; i < 100; i++ {
			if got = identity(ns); got == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("from %s: instance %q, want %q", ns.Name, got, want)
	}
	// The VM starts: its tap device appears and is bound.
	veth(t, host, g1, vh1, "10.201.1")
	expect(g1, "vm-a")
	expect(g2, "vm-b")
	if code, body := nsGet(t, g1, api.PathConfig); code != 200 || !strings.Contains(body, `"hostname":"vm-a"`) {
		t.Fatalf("config from %s: %d %s", g1.Name, code, body)
	}

	// DHCP gives g1 a new address: it keeps its identity.
	g1.IP(t, "addr", "flush", "dev", "eth0")
	g1.IP(t, "addr", "add", "10.201.1.77/24", "dev", "eth0")
	g1.IP(t, "route", "replace", "169.254.169.254/32", "via", "10.201.1.1")
	expect(g1, "vm-a")
	// Even an instance registered by g1's new address does not win over
	// the interface g1's requests arrive on.
	if _, err := c.Register(ctx(t), "vm-c", api.Registration{Addresses: []string{"10.201.1.77"}}); err != nil {
		t.Fatal(err)
	}
	expect(g1, "vm-a")

	// The VM restarts: its device is removed and re-created (a new
	// ifindex); the listener follows.
	host.IP(t, "link", "del", vh1)
	veth(t, host, g1, vh1, "10.201.1")
	expect(g1, "vm-a")

	// g2 is known by address only: a new address makes it a stranger.
	g2.IP(t, "addr", "flush", "dev", "eth0")
	g2.IP(t, "addr", "add", "10.201.2.50/24", "dev", "eth0")
	g2.IP(t, "route", "replace", "169.254.169.254/32", "via", "10.201.2.1")
	expect(g2, "")

	// Once vm-a gives its interface up, its listener closes and g1 is
	// known by address again.
	if _, err := c.Register(ctx(t), "vm-a", api.Registration{Addresses: []string{"10.201.1.200"}}); err != nil {
		t.Fatal(err)
	}
	g1.IP(t, "addr", "flush", "dev", "eth0")
	g1.IP(t, "addr", "add", "10.201.1.77/24", "dev", "eth0")
	g1.IP(t, "route", "replace", "169.254.169.254/32", "via", "10.201.1.1")
	expect(g1, "vm-c")
	if !strings.Contains(out.String(), "closing guest listener: host interface no longer registered") {
		t.Error("no log of the listener closing")
	}
}
