package dhcp

// ROOT TEST: see netns_linux_test.go (the same namespaces, veth and dnsmasq).

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
)

// TestBuiltinDHCPInterfaces: with the built-in client named (and no
// interfaces), the DHCP interfaces are those it leased and those backed
// by a device, not every interface: a veth pair made in the guest (like a
// container's, a bridge or a tunnel) is never one, the guest's own veth to
// dnsmasq only once leased.
func TestBuiltinDHCPInterfaces(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t)
	p := netlab.NewPair(t)
	p.StartDnsmasq(t, "10.77.0.52")
	g := p.StartGuest(t, "TestGuestBuiltinDHCPInterfaces")
	before := g.Expect("BEFORE", 30*time.Second)
	after := g.Expect("AFTER", 60*time.Second)
	g.Wait()
	if !strings.Contains(before, "ifaces=[]") {
		t.Errorf("before a lease: %s; want none (veths, no device)", before)
	}
	if !strings.Contains(after, "err=<nil>") || !strings.Contains(after, "ifaces=["+p.GuestIf+"]") {
		t.Errorf("after a lease: %s; want only %s", after, p.GuestIf)
	}
}

// TestGuestBuiltinDHCPInterfaces is the guest side of
// TestBuiltinDHCPInterfaces.
func TestGuestBuiltinDHCPInterfaces(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestBuiltinDHCPInterfaces; runs inside a test namespace")
	}
	iface := os.Getenv("PWL_IF")
	if out, err := exec.Command("ip", "link", "add", "pwl-va0", "up", "type", "veth", "peer", "name", "pwl-vb0").CombinedOutput(); err != nil {
		t.Fatalf("ip link add pwl-va0 type veth: %v: %s", err, out)
	}
	log := slog.New(slog.NewTextHandler(logW{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := New(Options{Client: Builtin, StateDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ifaces, err := r.DHCPInterfaces(ctx)
	fmt.Printf("PWL: BEFORE err=%v ifaces=%v\n", err, ifaces)
	_, err = r.RenewDHCP(ctx, iface)
	ifaces, lerr := r.DHCPInterfaces(ctx)
	fmt.Printf("PWL: AFTER err=%v listErr=%v ifaces=%v\n", err, lerr, ifaces)
	r.timersMu.Lock()
	for _, tm := range r.timers {
		tm.Stop()
	}
	r.timersMu.Unlock()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
}
