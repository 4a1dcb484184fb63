package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/network"
	"github.com/prewarm/prewarm/shared/config"
)

// TestBuiltinDefaultRouteBesideStaticInNetns (ROOT TEST): the built-in
// client's lease puts a default route (option 121's 0.0.0.0/0) on the
// guest's link, and the agent's apply puts a static one (gateway4) on a
// second link at the same metric: both stay after the apply, after a
// renewal, and after a second apply, which changes nothing. A replace on
// either side took the other link's route, and they swapped at every
// apply and renewal.
func TestBuiltinDefaultRouteBesideStaticInNetns(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t)
	p := netlab.NewPair(t)
	p.StartDnsmasq(t, "10.77.0.50")
	g := p.StartGuest(t, "TestGuestBuiltinDefaultRouteBesideStatic")
	g.Expect("CROSSLINK", 60*time.Second)
	g.Wait()
}

type noCommands struct{}

func (noCommands) Run(context.Context, run.Cmd) ([]byte, error) {
	return nil, errors.New("no commands in this test")
}
func (noCommands) Look(string) (string, error) { return "", run.ErrNotFound }

func TestGuestBuiltinDefaultRouteBesideStatic(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestBuiltinDefaultRouteBesideStaticInNetns; runs inside a test namespace")
	}
	dir, iface := os.Getenv("PWL_DIR"), os.Getenv("PWL_IF")
	netlab.PrivateFiles(t, dir)
	log := slog.New(slog.NewTextHandler(logW{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %q: %v: %s", args, err, out)
		}
	}
	// The static link: a veth pair of this namespace.
	ip("link", "add", "static0", "type", "veth", "peer", "name", "static0p")
	ip("link", "set", "static0p", "up")
	ip("link", "set", "static0", "up")
	mac, err := os.ReadFile("/sys/class/net/static0/address")
	if err != nil {
		t.Fatal(err)
	}

	r, err := New(Options{Client: Builtin, StateDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/systemd/network"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"), nil, 0o644)
	c := network.New(network.Options{Root: root, StateDir: t.TempDir(), Runner: noCommands{}, Logger: log, Live: true, RunDir: t.TempDir()})
	doc := &config.Network{Interfaces: []config.Interface{{
		MAC:       config.MustParseMAC(strings.TrimSpace(string(mac))),
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.66.0.5/24")},
		Gateway4:  netip.MustParseAddr("10.66.0.1"),
	}}}
	want := []string{
		"default via 10.66.0.1 dev static0 proto static",
		"default via 10.77.0.1 dev " + iface + " proto dhcp",
	}
	check := func(step string) {
		t.Helper()
		out, err := exec.Command("ip", "-4", "route", "show", "default").Output()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for l := range strings.Lines(string(out)) {
			got = append(got, strings.TrimSpace(l))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: default routes\n%q\nwant\n%q", step, got, want)
		}
	}
	if _, err := r.RenewDHCP(ctx, iface); err != nil {
		t.Fatal(err)
	}
	waitAddr(t, iface, "10.77.0.50/24")
	res, err := c.ApplyNetwork(ctx, doc)
	if err != nil || !res.Changed {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	check("after the apply")
	if _, err := r.RenewDHCP(ctx, iface); err != nil {
		t.Fatal(err)
	}
	check("after a renewal")
	res, err = c.ApplyNetwork(ctx, doc)
	if err != nil || res.Changed {
		t.Fatalf("second apply: %+v, %v (want no change)", res, err)
	}
	check("after a second apply")
	// The lease first, then the static route: the renewal keeps the static.
	ip("route", "del", "default", "dev", iface)
	if _, err := r.RenewDHCP(ctx, iface); err != nil {
		t.Fatal(err)
	}
	check("after a renewal that put the lease's route back")
	os.Stdout.WriteString("PWL: CROSSLINK\n")
}
