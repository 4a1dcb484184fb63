package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHarnessDHCP proves the harness without the binaries under test: two
// guests lease their pool addresses through dnsmasq, a remap plus a
// dhclient restart (what the agent does) moves guest 1 to its new network,
// and each guest has its own hostname, /etc and PID namespace.
func TestHarnessDHCP(t *testing.T) {
	l := NewLab(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, g := range l.Guests {
		start := time.Now()
		if err := g.StartDHCP(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: first lease in %v", g.ID, time.Since(start).Round(time.Millisecond))
		as, err := g.Addrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := g.Addr1.String() + "/24"; !slices.Contains(as, want) {
			t.Fatalf("%s: addresses %v, want %s", g.ID, as, want)
		}
	}
	g := l.Guests[0]
	if err := g.Remap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.StopDHCP(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Bounce(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.StartDHCP(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: re-mapped lease in %v", g.ID, time.Since(start).Round(time.Millisecond))
	as, _ := g.Addrs(ctx)
	if want := g.Addr2.String() + "/24"; !slices.Equal(as, []string{want}) {
		t.Fatalf("after remap: addresses %v, want only %s", as, want)
	}
	if out := g.MustExec("ip", "-4", "route", "show", "default"); !strings.Contains(out, g.GW2.String()) {
		t.Fatalf("default route %q, want via %s", out, g.GW2)
	}
	// The guest reaches 169.254.169.254 on the host end.
	if out := g.MustExec("ip", "route", "get", IMDSAddr); !strings.Contains(out, "eth0") {
		t.Fatalf("route to the IMDS: %q", out)
	}
	// Namespaces: hostname and /etc are private, PID 1 is the holder.
	g.MustExec("hostname", "guest-one")
	host, _ := run(ctx, "hostname")
	if strings.TrimSpace(host) == "guest-one" {
		t.Fatal("the guest's hostname leaked to this machine")
	}
	if got := strings.TrimSpace(l.Guests[1].MustExec("hostname")); got != "localhost" {
		t.Fatalf("guest 2 hostname %q", got)
	}
	g.MustExec("sh", "-c", "echo e2e-marker >> /etc/motd")
	if b, _ := run(ctx, "grep", "-c", "e2e-marker", "/etc/motd"); strings.TrimSpace(b) != "0" {
		t.Fatal("the guest's /etc is not private")
	}
	if out := g.MustExec("sh", "-c", "ls /proc | grep -c '^[0-9]'"); strings.TrimSpace(out) == "" {
		t.Fatal("no /proc in the guest")
	}
	if out := g.MustExec("ls", l.Root); strings.TrimSpace(out) != "" {
		t.Fatalf("the lab directory is visible in the guest: %q", out)
	}
}
