package network

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/config"
)

// TestNetworkDefaultRouteBesideAnotherLinkInNetns (ROOT TEST): gateway4 on
// one link beside another link's DHCP default route at the same metric
// (a dhcp4 eth0 and a static eth1): both default routes stay, the other
// link's untouched, and a second apply changes nothing.
func TestNetworkDefaultRouteBesideAnotherLinkInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkDefaultRouteBesideAnotherLink", "CROSSLINK")
}

// defaultRoutes lists the IPv4 default routes as "via GW dev DEV proto P
// metric M", sorted.
func defaultRoutes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show", "default").Output()
	if err != nil {
		t.Fatalf("ip route show default: %v", err)
	}
	var rs []string
	for l := range strings.Lines(string(out)) {
		rs = append(rs, strings.TrimSpace(l))
	}
	slices.Sort(rs)
	return rs
}

func TestGuestNetworkDefaultRouteBesideAnotherLink(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkDefaultRouteBesideAnotherLinkInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	// The DHCP link: a link in this namespace with a lease's address and
	// default route (proto dhcp, metric 0), as a DHCP client adds them:
	// a veth pair of this namespace (the kernel has no dummy module).
	sh(t, "ip", "link", "add", "dhcp0", "type", "veth", "peer", "name", "dhcp0p")
	sh(t, "ip", "link", "set", "dhcp0p", "up")
	sh(t, "ip", "link", "set", "dhcp0", "up")
	sh(t, "ip", "addr", "add", "10.88.0.5/24", "dev", "dhcp0")
	sh(t, "ip", "route", "add", "default", "via", "10.88.0.1", "dev", "dhcp0", "proto", "dhcp")
	sh(t, "ip", "route", "add", "10.99.0.0/16", "via", "10.88.0.254", "dev", "dhcp0", "metric", "5")
	// IPv6 merges routes to one network and metric into one route of
	// several next hops: the apply adds its own and keeps the other's.
	sh(t, "ip", "-6", "route", "add", "2001:db8:99::/48", "via", "fe80::1", "dev", "dhcp0")

	root, stateDir := managerRoot(t, Networkd), t.TempDir()
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	in := config.Interface{
		MAC: config.MustParseMAC(mac), Addresses: mustPfxs("10.77.0.5/24"), Gateway4: mustAddr("10.77.0.1"),
		Routes: []config.Route{{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254"), Metric: 5}, {To: mustPfx("2001:db8:99::/48"), Via: mustAddr("fe80::2")}},
	}
	want := []string{
		"default via 10.77.0.1 dev " + iface + " proto static",
		"default via 10.88.0.1 dev dhcp0 proto dhcp",
	}
	slices.Sort(want)
	for i, wantChanged := range []bool{true, false} {
		res, err := c.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{in}})
		if err != nil || res.Changed != wantChanged {
			t.Fatalf("apply %d: %+v, %v (want changed %v)", i+1, res, err, wantChanged)
		}
		t.Logf("apply %d: actions %q", i+1, res.Actions)
		if got := defaultRoutes(t); !slices.Equal(got, want) {
			t.Fatalf("apply %d: default routes\n%q\nwant\n%q", i+1, got, want)
		}
		out, _ := exec.Command("ip", "-4", "route", "show", "10.99.0.0/16").Output()
		if !strings.Contains(string(out), "via 10.88.0.254 dev dhcp0") || !strings.Contains(string(out), "via 10.77.0.254 dev "+iface) {
			t.Fatalf("apply %d: routes to 10.99.0.0/16:\n%s", i+1, out)
		}
		out, _ = exec.Command("ip", "-6", "route", "show", "2001:db8:99::/48").Output()
		if !strings.Contains(string(out), "via fe80::1 dev dhcp0") || !strings.Contains(string(out), "via fe80::2 dev "+iface) {
			t.Fatalf("apply %d: routes to 2001:db8:99::/48:\n%s", i+1, out)
		}
	}
	// A gateway change replaces the link's own route only.
	in.Gateway4 = mustAddr("10.77.0.2")
	in.Routes[1].Via = mustAddr("fe80::3")
	res, err := c.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{in}})
	if err != nil || !res.Changed {
		t.Fatalf("gateway change: %+v, %v", res, err)
	}
	want = []string{"default via 10.77.0.2 dev " + iface + " proto static", "default via 10.88.0.1 dev dhcp0 proto dhcp"}
	slices.Sort(want)
	if got := defaultRoutes(t); !slices.Equal(got, want) {
		t.Fatalf("gateway change: default routes\n%q\nwant\n%q (actions %q)", got, want, res.Actions)
	}
	out, _ := exec.Command("ip", "-6", "route", "show", "2001:db8:99::/48").Output()
	if !strings.Contains(string(out), "via fe80::1 dev dhcp0") || !strings.Contains(string(out), "via fe80::3 dev "+iface) || strings.Contains(string(out), "fe80::2") {
		t.Fatalf("via change: routes to 2001:db8:99::/48 (want fe80::1 on dhcp0 kept, fe80::3 for fe80::2):\n%s(actions %q)", out, res.Actions)
	}
	os.Stdout.WriteString("PWL: CROSSLINK\n")
}
