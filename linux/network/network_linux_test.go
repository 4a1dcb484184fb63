package network

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

	"github.com/prewarm/prewarm/linux/internal/nl"
	"github.com/prewarm/prewarm/linux/internal/nstest"
	"github.com/prewarm/prewarm/linux/internal/run"
	"github.com/prewarm/prewarm/shared/config"
)

type noRunner struct{}

func (noRunner) Run(context.Context, run.Cmd) ([]byte, error) {
	return nil, errors.New("no commands in this test")
}
func (noRunner) Look(string) (string, error) { return "", run.ErrNotFound }

func TestRender(t *testing.T) {
	w, err := parse(config.Interface{
		MAC: "52:54:00:AA:BB:CC", Addresses: []string{"10.1.0.5/24"}, Gateway4: "10.1.0.1",
		Routes: []config.Route{{To: "10.2.0.0/16", Via: "10.1.0.254"}}, MTU: 1400,
		Nameservers: []string{"10.1.0.2"}, SearchDomains: []string{"corp.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	nd := string(renderNetworkd(w))
	for _, want := range []string{"MACAddress=52:54:00:aa:bb:cc", "MTUBytes=1400", "Address=10.1.0.5/24", "Gateway=10.1.0.1", "DNS=10.1.0.2", "Domains=corp.example", "Destination=10.2.0.0/16\nGateway=10.1.0.254"} {
		if !strings.Contains(nd, want) {
			t.Errorf("networkd file lacks %q:\n%s", want, nd)
		}
	}
	kf := string(renderKeyfile(w, "eth0"))
	for _, want := range []string{"mac-address=52:54:00:AA:BB:CC", "address1=10.1.0.5/24,10.1.0.1", "route1=10.2.0.0/16,10.1.0.254", "dns=10.1.0.2;", "mtu=1400"} {
		if !strings.Contains(kf, want) {
			t.Errorf("keyfile lacks %q:\n%s", want, kf)
		}
	}
	iu := string(renderIfupdown(w, "eth0"))
	for _, want := range []string{"auto eth0", "iface eth0 inet static", "address 10.1.0.5/24", "gateway 10.1.0.1", "mtu 1400", "up ip route add 10.2.0.0/16 via 10.1.0.254 dev eth0"} {
		if !strings.Contains(iu, want) {
			t.Errorf("ifupdown stanza lacks %q:\n%s", want, iu)
		}
	}
	if got := string(renderResolvConf([]string{"a", "b", "c", "d"}, []string{"x.example"})); strings.Contains(got, "nameserver d") || !strings.Contains(got, "search x.example") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	for _, bad := range []config.Interface{
		{MAC: "52:54:00:00:00:01", Addresses: []string{"10.1.0.5"}},
		{MAC: "52:54:00:00:00:01", Gateway4: "fe80::1"},
		{MAC: "52:54:00:00:00:01", Routes: []config.Route{{To: "x", Via: "10.0.0.1"}}},
		{MAC: "52:54:00:00:00:01", MTU: 10},
	} {
		if _, err := parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
}

// TestNetworkApplyInNetns (ROOT TEST) applies a network section inside a
// namespace of its own (this binary re-executed under `ip netns exec`).
func TestNetworkApplyInNetns(t *testing.T) {
	if nstest.InGuest() {
		t.Skip("host side only")
	}
	p := nstest.NewPair(t)
	g := p.StartGuest(t, "TestGuestNetworkApply", "PWL_MAC="+p.GuestMAC)
	g.Expect("APPLIED", 30*time.Second)
	g.Wait()
}

type fakeRunner struct{ cmds []string }

func (f *fakeRunner) Run(_ context.Context, c run.Cmd) ([]byte, error) {
	f.cmds = append(f.cmds, c.String())
	return nil, nil
}
func (f *fakeRunner) Look(name string) (string, error) { return "/fake/" + name, nil }

type logW struct{}

func (logW) Write(b []byte) (int, error) { return os.Stderr.Write(b) }

func TestGuestNetworkApply(t *testing.T) {
	if !nstest.InGuest() {
		t.Skip("guest side of TestNetworkApplyInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	root, stateDir := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/systemd/network"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"), nil, 0o644)
	// An address and a route the agent did not add: they must stay.
	if out, err := exec.Command("ip", "addr", "add", "10.66.0.9/24", "dev", iface).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log})
	ctx := context.Background()
	doc := &config.Network{Interfaces: []config.Interface{{
		MAC: strings.ToUpper(mac), Addresses: []string{"10.77.0.5/24", "10.88.1.5/24"}, Gateway4: "10.77.0.1",
		Routes: []config.Route{{To: "10.99.0.0/16", Via: "10.77.0.254"}}, MTU: 1400,
		Nameservers: []string{"10.77.0.2", "10.77.0.3"}, SearchDomains: []string{"corp.example"},
	}}}
	res, err := c.ApplyNetwork(ctx, doc)
	if err != nil || !res.Changed {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	t.Logf("actions: %q", res.Actions)
	check := func(wantAddrs []string, wantRoutes []string, notRoutes []string) {
		t.Helper()
		conn, err := nl.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		l, err := conn.LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		if l.MTU != 1400 {
			t.Errorf("mtu %d", l.MTU)
		}
		as, _ := conn.Addrs(l.Index)
		var got []string
		for _, a := range nl.GlobalPrefixes(as) {
			got = append(got, a.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, wantAddrs) {
			t.Errorf("addresses %v, want %v", got, wantAddrs)
		}
		rs, _ := conn.Routes()
		var have []string
		for _, r := range rs {
			if r.Gateway.IsValid() {
				have = append(have, r.Dst.String()+" via "+r.Gateway.String())
			}
		}
		for _, w := range wantRoutes {
			if !slices.Contains(have, w) {
				t.Errorf("route %q missing; have %v", w, have)
			}
		}
		for _, w := range notRoutes {
			if slices.Contains(have, w) {
				t.Errorf("route %q still there", w)
			}
		}
	}
	check([]string{"10.66.0.9/24", "10.77.0.5/24", "10.88.1.5/24"}, []string{"0.0.0.0/0 via 10.77.0.1", "10.99.0.0/16 via 10.77.0.254"}, nil)
	rc, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf"))
	if !strings.Contains(string(rc), "nameserver 10.77.0.2\nnameserver 10.77.0.3\nsearch corp.example\n") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
	nd, _ := os.ReadFile(filepath.Join(root, "etc/systemd/network/10-prewarm-"+strings.ReplaceAll(mac, ":", "")+".network"))
	if !strings.Contains(string(nd), "Address=10.77.0.5/24") {
		t.Errorf("networkd file:\n%s", nd)
	}

	if res, err := c.ApplyNetwork(ctx, doc); err != nil || res.Changed {
		t.Fatalf("reapply changed something: %+v, %v", res, err)
	}

	// Drop an address and change the route: the agent removes its own,
	// and only its own.
	doc.Interfaces[0].Addresses = []string{"10.77.0.5/24", "10.66.0.9/24"}
	doc.Interfaces[0].Routes = []config.Route{{To: "10.98.0.0/16", Via: "10.77.0.254"}}
	if res, err = c.ApplyNetwork(ctx, doc); err != nil || !res.Changed {
		t.Fatalf("change: %+v, %v", res, err)
	}
	t.Logf("actions: %q", res.Actions)
	check([]string{"10.66.0.9/24", "10.77.0.5/24"}, []string{"10.98.0.0/16 via 10.77.0.254"}, []string{"10.99.0.0/16 via 10.77.0.254"})
	doc.Interfaces[0].Addresses = []string{"10.77.0.5/24"}
	if res, err = c.ApplyNetwork(ctx, doc); err != nil {
		t.Fatal(err)
	}
	// 10.66.0.9 is named by no document now, but the agent did not add it.
	check([]string{"10.66.0.9/24", "10.77.0.5/24"}, nil, nil)
	if _, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{{MAC: "02:00:00:00:00:99", Addresses: []string{"10.1.1.1/24"}}}}); !errors.Is(err, nl.ErrNoLink) {
		t.Errorf("unknown MAC: err %v, want ErrNoLink", err)
	}
	_ = netip.Prefix{}

	// A live system with systemd-resolved: DNS goes through resolvectl,
	// once, and /etc/resolv.conf is left alone.
	runDir, root2 := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(runDir, "systemd/resolve"), 0o755)
	fr := &fakeRunner{}
	rc2 := New(Options{Root: root2, StateDir: t.TempDir(), Runner: fr, Logger: log, Live: true, RunDir: runDir})
	for range 2 {
		if _, err := rc2.ApplyNetwork(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"resolvectl dns " + iface + " 10.77.0.2 10.77.0.3", "resolvectl domain " + iface + " corp.example"}
	if !slices.Equal(fr.cmds, want) {
		t.Errorf("resolved commands %q, want %q", fr.cmds, want)
	}
	if _, err := os.Stat(filepath.Join(root2, "etc/resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf written although resolved runs: %v", err)
	}
	os.Stdout.WriteString("PWL: APPLIED\n")
}
