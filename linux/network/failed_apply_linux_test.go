package network

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/config"
)

// TestNetworkFailedApplyInNetns (ROOT TEST): a generation whose gateway
// cannot be installed, or whose route carries a zone, fails and leaves the
// link, the persisted file, resolv.conf and the agent's state as they were
// (or names exactly what it changed); the next valid generation, which
// changes the gateway, applies cleanly, and a state file of an older agent
// holding a zoned route does not leak that route.
func TestNetworkFailedApplyInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkFailedApply", "FAILED-APPLY")
}

func TestGuestNetworkFailedApply(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkFailedApplyInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	for _, m := range []string{Networkd, NetworkManager, Ifupdown} {
		root, stateDir := managerRoot(t, m), t.TempDir()
		c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
		apply := func(in config.Interface) (bool, error) {
			t.Helper()
			in.MAC = config.MustParseMAC(mac)
			res, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{in}})
			t.Logf("%s: actions %q, err %v", m, res.Actions, err)
			return res.Changed, err
		}
		type snap struct {
			addrs, routes   []string
			file, rc, state string
		}
		take := func() snap {
			var s snap
			s.addrs, s.routes, _ = linkState(t, iface)
			b, _ := os.ReadFile(filepath.Join(root, persistedPath(m, mac, iface)))
			s.file = string(b)
			b, _ = os.ReadFile(filepath.Join(root, "etc/resolv.conf"))
			s.rc = string(b)
			b, _ = os.ReadFile(filepath.Join(stateDir, stateFile))
			s.state = string(b)
			return s
		}
		same := func(what string, a, b snap) {
			t.Helper()
			if !slices.Equal(a.addrs, b.addrs) || !slices.Equal(a.routes, b.routes) || a.file != b.file || a.rc != b.rc || a.state != b.state {
				t.Errorf("%s: %s changed the system:\nbefore %+v\nafter  %+v", m, what, a, b)
			}
		}

		gen1 := config.Interface{Addresses: mustPfxs("10.77.0.5/24"), Gateway4: mustAddr("10.77.0.1"),
			Routes: []config.Route{{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254")}}, Nameservers: mustAddrs("10.77.0.2")}
		if _, err := apply(gen1); err != nil {
			t.Fatalf("%s: gen 1: %v", m, err)
		}
		before := take()

		// A gateway the kernel will not route through (not on any link).
		bad := gen1
		bad.Gateway4, bad.Nameservers = mustAddr("192.0.2.1"), mustAddrs("10.77.0.3")
		if _, err := apply(bad); err == nil || !strings.Contains(err.Error(), "192.0.2.1") || !strings.Contains(err.Error(), "made before the failure") {
			t.Errorf("%s: unusable gateway: err %v, want one naming it and what was kept", m, err)
		}
		same("a failed apply (unusable gateway)", before, take())

		// A zoned route of a document that was never validated.
		zoned := gen1
		zoned.Routes = []config.Route{{To: mustPfx("2001:db8:1::/48"), Via: mustAddr("fe80::1%x;touch /tmp/pwned")}}
		if _, err := apply(zoned); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "routes[0].via") {
			t.Errorf("%s: zoned route: err %v, want ErrInvalid naming routes[0].via", m, err)
		}
		same("a refused apply (zoned route)", before, take())

		// The next valid generation changes the gateway and the route.
		gen2 := gen1
		gen2.Gateway4, gen2.Routes = mustAddr("10.77.0.254"), []config.Route{{To: mustPfx("10.98.0.0/16"), Via: mustAddr("10.77.0.1")}}
		if _, err := apply(gen2); err != nil {
			t.Fatalf("%s: gen 2 after failed applies: %v", m, err)
		}
		_, routes, _ := linkState(t, iface)
		if want := []string{"0.0.0.0/0 via 10.77.0.254", "10.98.0.0/16 via 10.77.0.1"}; !slices.Equal(routes, want) {
			t.Errorf("%s: routes after gen 2: %v, want %v", m, routes, want)
		}
		if file := take().file; !strings.Contains(file, "10.77.0.254") || strings.Contains(file, "192.0.2.1") {
			t.Errorf("%s: persisted file after gen 2:\n%s", m, file)
		}
		if changed, err := apply(gen2); err != nil || changed {
			t.Errorf("%s: gen 2 again: changed %v, err %v", m, changed, err)
		}

		// A failure part way: the address is added, then the gateway
		// fails. The error names the address; the next generation takes it
		// back.
		part := gen2
		part.Addresses, part.Gateway4 = mustPfxs("10.77.0.5/24", "10.88.0.5/24"), mustAddr("192.0.2.1")
		if _, err := apply(part); err == nil || !strings.Contains(err.Error(), "add 10.88.0.5/24 to "+iface) {
			t.Errorf("%s: partial failure: err %v, want one naming the address it added", m, err)
		}
		if _, err := apply(gen2); err != nil {
			t.Fatalf("%s: gen 2 after a partial failure: %v", m, err)
		}
		if addrs, routes, _ := linkState(t, iface); !slices.Equal(addrs, []string{"10.77.0.5/24"}) || !slices.Equal(routes, []string{"0.0.0.0/0 via 10.77.0.254", "10.98.0.0/16 via 10.77.0.1"}) {
			t.Errorf("%s: after the partial failure and gen 2: %v %v", m, addrs, routes)
		}
		if _, err := apply(config.Interface{Addresses: mustPfxs(), Routes: []config.Route{}}); err != nil {
			t.Fatalf("%s: clean-up: %v", m, err)
		}
	}

	// A state file of an agent from before zones were refused records a
	// route with a zone; the kernel's route has none. It is still the
	// agent's: a document without it removes it, and one that wants it via
	// another gateway replaces it.
	sh(t, "ip", "addr", "add", "2001:db8::5/64", "dev", iface, "nodad")
	sh(t, "ip", "route", "add", "2001:db8:1::/48", "via", "fe80::1", "dev", iface)
	stateDir := t.TempDir()
	os.WriteFile(filepath.Join(stateDir, stateFile), []byte(`{"interfaces":{"`+strings.ToLower(mac)+`":{"routes":[{"to":"2001:db8:1::/48","via":"fe80::1%x;touch /tmp/pwned"}]}}}`), 0o600)
	c := New(Options{Root: managerRoot(t, Networkd), StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	if _, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC(mac), Routes: []config.Route{{To: mustPfx("2001:db8:1::/48"), Via: mustAddr("fe80::2")}}}}}); err != nil {
		t.Fatalf("replacing the zoned route of an old state file: %v", err)
	}
	if _, routes, _ := linkState(t, iface); !slices.Equal(routes, []string{"2001:db8:1::/48 via fe80::2"}) {
		t.Errorf("routes %v, want only 2001:db8:1::/48 via fe80::2", routes)
	}
	if _, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC(mac), Routes: []config.Route{}}}}); err != nil {
		t.Fatal(err)
	}
	if _, routes, _ := linkState(t, iface); len(routes) > 0 {
		t.Errorf("routes %v left", routes)
	}
	os.Stdout.WriteString("PWL: FAILED-APPLY\n")
}

// TestNetworkAbsentLinkInNetns (ROOT TEST): a document naming a NIC that
// is not there (yet) fails the step naming its MAC, but the NIC that is
// there is configured, its persisted file written and its name servers
// applied: one absent NIC does not hold back the others' DNS.
func TestNetworkAbsentLinkInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkAbsentLink", "ABSENT-LINK")
}

func TestGuestNetworkAbsentLink(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkAbsentLinkInNetns; runs inside a test namespace")
	}
	mac := os.Getenv("PWL_MAC")
	const absent = "52:54:00:ab:5e:17"
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	for _, m := range []string{Networkd, Ifupdown} {
		root, stateDir := managerRoot(t, m), t.TempDir()
		c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
		res, err := c.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{
			{MAC: config.MustParseMAC(mac), Addresses: mustPfxs("10.77.0.5/24"), Nameservers: mustAddrs("10.77.0.9")},
			{MAC: config.MustParseMAC(absent), Addresses: mustPfxs("10.78.0.5/24"), Nameservers: mustAddrs("10.78.0.9")},
		}})
		t.Logf("%s: actions %q, err %v", m, res.Actions, err)
		if err == nil || !strings.Contains(err.Error(), absent) {
			t.Errorf("%s: err %v, want one naming the absent NIC %s", m, err, absent)
		}
		if m == Ifupdown {
			rc, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf"))
			if !strings.Contains(string(rc), "10.77.0.9") {
				t.Errorf("%s: resolv.conf lacks the present NIC's name server:\n%s", m, rc)
			}
		}
		if addrs, _, _ := linkState(t, os.Getenv("PWL_IF")); !slices.Contains(addrs, "10.77.0.5/24") {
			t.Errorf("%s: the present NIC was not configured: addresses %q", m, addrs)
		}
	}
	os.Stdout.WriteString("PWL: ABSENT-LINK\n")
}
