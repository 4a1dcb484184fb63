package network

import (
	"context"
	"errors"
	"log/slog"
	"net"
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
	"github.com/prewarm/prewarm/linux/nl"
	"github.com/prewarm/prewarm/shared/config"
)

// must returns b, panicking on err: for renders that cannot fail.
func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

type noRunner struct{}

func (noRunner) Run(context.Context, run.Cmd) ([]byte, error) {
	return nil, errors.New("no commands in this test")
}
func (noRunner) Look(string) (string, error) { return "", run.ErrNotFound }

func TestRender(t *testing.T) {
	w, err := parse(config.Interface{
		MAC: config.MustParseMAC("52:54:00:AA:BB:CC"), Addresses: mustPfxs("10.1.0.5/24"), Gateway4: mustAddr("10.1.0.1"),
		Routes: []config.Route{{To: mustPfx("10.2.0.0/16"), Via: mustAddr("10.1.0.254")}}, MTU: 1400,
		Nameservers: mustAddrs("10.1.0.2"), SearchDomains: []string{"corp.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	nd := string(must(renderNetworkd(w)))
	for _, want := range []string{"MACAddress=52:54:00:aa:bb:cc", "MTUBytes=1400", "Address=10.1.0.5/24", "Gateway=10.1.0.1", "DNS=10.1.0.2", "Domains=corp.example", "Destination=10.2.0.0/16\nGateway=10.1.0.254"} {
		if !strings.Contains(nd, want) {
			t.Errorf("networkd file lacks %q:\n%s", want, nd)
		}
	}
	kf := string(must(renderKeyfile(w, "eth0")))
	for _, want := range []string{"mac-address=52:54:00:AA:BB:CC", "address1=10.1.0.5/24,10.1.0.1", "route1=10.2.0.0/16,10.1.0.254", "dns=10.1.0.2;", "mtu=1400"} {
		if !strings.Contains(kf, want) {
			t.Errorf("keyfile lacks %q:\n%s", want, kf)
		}
	}
	iu := string(must(renderIfupdown(w, "eth0")))
	for _, want := range []string{"auto eth0", "iface eth0 inet static", "address 10.1.0.5/24", "gateway 10.1.0.1", "mtu 1400", "up ip route add 10.2.0.0/16 via 10.1.0.254 dev eth0"} {
		if !strings.Contains(iu, want) {
			t.Errorf("ifupdown stanza lacks %q:\n%s", want, iu)
		}
	}
	ns := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")}
	if got := string(must(renderResolvConf(ns, []string{"x.example"}))); strings.Contains(got, "nameserver 10.0.0.4") || !strings.Contains(got, "search x.example") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	for _, bad := range []config.Interface{
		{MAC: config.MustParseMAC("52:54:00:00:00:01"), Addresses: []netip.Prefix{{}}},
		{MAC: config.MustParseMAC("52:54:00:00:00:01"), Gateway4: mustAddr("fe80::1")},
		{MAC: config.MustParseMAC("52:54:00:00:00:01"), Routes: []config.Route{{Via: mustAddr("10.0.0.1")}}},
		{MAC: config.MustParseMAC("52:54:00:00:00:01"), MTU: 10},
	} {
		if _, err := parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
}

// TestNetworkApplyInNetns (ROOT TEST) applies a network section inside a
// namespace of its own (this binary re-executed under `ip netns exec`).
func TestNetworkApplyInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkApply", "APPLIED")
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
	if !netlab.InGuest() {
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
	c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	ctx := context.Background()
	doc := &config.Network{Interfaces: []config.Interface{{
		MAC: config.MustParseMAC(strings.ToUpper(mac)), Addresses: mustPfxs("10.77.0.5/24", "10.88.1.5/24"), Gateway4: mustAddr("10.77.0.1"),
		Routes: []config.Route{{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254")}}, MTU: 1400,
		Nameservers: mustAddrs("10.77.0.2", "10.77.0.3"), SearchDomains: []string{"corp.example"},
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
	doc.Interfaces[0].Addresses = mustPfxs("10.77.0.5/24", "10.66.0.9/24")
	doc.Interfaces[0].Routes = []config.Route{{To: mustPfx("10.98.0.0/16"), Via: mustAddr("10.77.0.254")}}
	if res, err = c.ApplyNetwork(ctx, doc); err != nil || !res.Changed {
		t.Fatalf("change: %+v, %v", res, err)
	}
	t.Logf("actions: %q", res.Actions)
	check([]string{"10.66.0.9/24", "10.77.0.5/24"}, []string{"10.98.0.0/16 via 10.77.0.254"}, []string{"10.99.0.0/16 via 10.77.0.254"})
	doc.Interfaces[0].Addresses = mustPfxs("10.77.0.5/24")
	if res, err = c.ApplyNetwork(ctx, doc); err != nil {
		t.Fatal(err)
	}
	// 10.66.0.9 is named by no document now, but the agent did not add it.
	check([]string{"10.66.0.9/24", "10.77.0.5/24"}, nil, nil)
	// A route to the same destination that someone else installed (DHCP
	// option 121 puts 169.254.169.254/32 there) going another way: the
	// document's static route takes its place instead of failing the step
	// with "file exists".
	if out, err := exec.Command("ip", "route", "add", "169.254.169.254/32", "via", "10.66.0.1", "dev", iface).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	doc.Interfaces[0].Routes = append(doc.Interfaces[0].Routes, config.Route{To: mustPfx("169.254.169.254/32"), Via: mustAddr("10.77.0.254")})
	if res, err = c.ApplyNetwork(ctx, doc); err != nil || !res.Changed {
		t.Fatalf("static route over a foreign one: %+v, %v", res, err)
	}
	t.Logf("actions: %q", res.Actions)
	check([]string{"10.66.0.9/24", "10.77.0.5/24"}, []string{"169.254.169.254/32 via 10.77.0.254", "10.98.0.0/16 via 10.77.0.254"}, []string{"169.254.169.254/32 via 10.66.0.1"})
	if res, err := c.ApplyNetwork(ctx, doc); err != nil || res.Changed {
		t.Fatalf("reapply after the replace changed something: %+v, %v", res, err)
	}
	if _, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC("02:00:00:00:00:99"), Addresses: mustPfxs("10.1.1.1/24")}}}); !errors.Is(err, nl.ErrNoLink) {
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

// linkState lists, inside a guest namespace, iface's global addresses and
// its routes with a gateway ("dst via gw"), both sorted, and its MTU.
func linkState(t *testing.T, iface string) (addrs, routes []string, mtu int) {
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
	as, err := conn.Addrs(l.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range nl.GlobalPrefixes(as) {
		addrs = append(addrs, a.String())
	}
	rs, err := conn.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Gateway.IsValid() && r.Index == l.Index {
			routes = append(routes, r.Dst.String()+" via "+r.Gateway.String())
		}
	}
	slices.Sort(addrs)
	slices.Sort(routes)
	return addrs, routes, l.MTU
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%q: %v: %s", args, err, out)
	}
}

// managerRoot makes a target root whose network manager is m.
func managerRoot(t *testing.T, m string) string {
	t.Helper()
	root := t.TempDir()
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	os.MkdirAll(wants, 0o755)
	switch m {
	case Networkd:
		os.MkdirAll(filepath.Join(root, "etc/systemd/network"), 0o755)
		os.WriteFile(filepath.Join(wants, "systemd-networkd.service"), nil, 0o644)
	case NetworkManager:
		os.MkdirAll(filepath.Join(root, "etc/NetworkManager/system-connections"), 0o755)
		os.WriteFile(filepath.Join(wants, "NetworkManager.service"), nil, 0o644)
	case Ifupdown:
		os.MkdirAll(filepath.Join(root, "etc/network/interfaces.d"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/network/interfaces"), []byte("source /etc/network/interfaces.d/*\n"), 0o644)
	}
	if c := New(Options{Root: root}); c.manager() != m {
		t.Fatalf("root detected as %q, want %q", c.manager(), m)
	}
	return root
}

// persistedPath is where the agent persists mac (link name iface) for m.
func persistedPath(m, mac, iface string) string {
	id := strings.ReplaceAll(mac, ":", "")
	switch m {
	case Networkd:
		return networkdPath(id)
	case NetworkManager:
		return keyfilePath(id)
	}
	return ifupdownPath(iface)
}

func readState(t *testing.T, dir string) *state {
	t.Helper()
	st, err := (&Configurator{o: Options{StateDir: dir}}).load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNetworkDHCPSwitchInNetns (ROOT TEST): an interface switched from a
// static config to dhcp4 loses the addresses and routes the agent added (and
// only those) and the agent's persisted file, for every manager.
func TestNetworkDHCPSwitchInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkDHCPSwitch", "SWITCHED")
}

func TestGuestNetworkDHCPSwitch(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkDHCPSwitchInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	// Not the agent's: they stay through every switch.
	sh(t, "ip", "addr", "add", "10.66.0.9/24", "dev", iface)
	sh(t, "ip", "route", "add", "10.55.0.0/16", "via", "10.66.0.1", "dev", iface)
	foreignAddrs, foreignRoutes := []string{"10.66.0.9/24"}, []string{"10.55.0.0/16 via 10.66.0.1"}
	static := &config.Network{Interfaces: []config.Interface{{
		MAC: config.MustParseMAC(strings.ToUpper(mac)), Addresses: mustPfxs("10.77.0.5/24", "10.88.1.5/24"), Gateway4: mustAddr("10.77.0.1"),
		Routes: []config.Route{{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254")}},
	}}}
	dhcp := &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC(mac), DHCP4: true, Addresses: mustPfxs()}}}
	for _, m := range []string{Networkd, NetworkManager, Ifupdown} {
		root, stateDir := managerRoot(t, m), t.TempDir()
		// Another interface's ifupdown file, and a file the agent did not
		// write: both stay.
		other, err := parse(config.Interface{MAC: config.MustParseMAC("52:54:00:99:99:99"), Addresses: mustPfxs("10.5.0.5/24")})
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, ifupdownDir), 0o755)
		os.WriteFile(filepath.Join(root, ifupdownPath("eth9")), must(renderIfupdown(other, "eth9")), 0o644)
		os.WriteFile(filepath.Join(root, ifupdownPath("mine")), []byte("auto eth0\niface eth0 inet static\n"), 0o644)
		c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
		if _, err := c.ApplyNetwork(ctx, static); err != nil {
			t.Fatalf("%s: static apply: %v", m, err)
		}
		addrs, routes, _ := linkState(t, iface)
		if want := []string{"10.66.0.9/24", "10.77.0.5/24", "10.88.1.5/24"}; !slices.Equal(addrs, want) {
			t.Fatalf("%s: static addresses %v, want %v", m, addrs, want)
		}
		if !slices.Contains(routes, "0.0.0.0/0 via 10.77.0.1") || !slices.Contains(routes, "10.99.0.0/16 via 10.77.0.254") {
			t.Fatalf("%s: static routes %v", m, routes)
		}
		file := filepath.Join(root, persistedPath(m, mac, iface))
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("%s: static config not persisted: %v", m, err)
		}

		res, err := c.ApplyNetwork(ctx, dhcp)
		if err != nil || !res.Changed {
			t.Fatalf("%s: dhcp apply: %+v, %v", m, res, err)
		}
		t.Logf("%s: actions %q", m, res.Actions)
		addrs, routes, _ = linkState(t, iface)
		if !slices.Equal(addrs, foreignAddrs) || !slices.Equal(routes, foreignRoutes) {
			t.Errorf("%s: after switching to DHCP: addresses %v, routes %v; want only the foreign %v, %v", m, addrs, routes, foreignAddrs, foreignRoutes)
		}
		if own := readState(t, stateDir).Interfaces[strings.ToLower(mac)]; own != nil && (len(own.Addresses) > 0 || len(own.Routes) > 0) {
			t.Errorf("%s: state still owns %+v", m, own)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s: the static config persisted for %s is still there (%v)", m, mac, err)
		}
		for _, keep := range []string{ifupdownPath("eth9"), ifupdownPath("mine")} {
			if _, err := os.Stat(filepath.Join(root, keep)); err != nil {
				t.Errorf("%s: %s removed: %v", m, keep, err)
			}
		}
		if res, err := c.ApplyNetwork(ctx, dhcp); err != nil || res.Changed {
			t.Errorf("%s: dhcp reapply: %+v, %v", m, res, err)
		}
	}

	// An address or route of the agent's taken over by DHCP since (a
	// lifetime, a DHCP protocol) is forgotten, not removed.
	stateDir := t.TempDir()
	c := New(Options{Root: managerRoot(t, Networkd), StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	if _, err := c.ApplyNetwork(ctx, static); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "addr", "change", "10.77.0.5/24", "dev", iface, "valid_lft", "300", "preferred_lft", "300")
	sh(t, "ip", "route", "replace", "default", "via", "10.77.0.1", "dev", iface, "proto", "dhcp")
	if _, err := c.ApplyNetwork(ctx, dhcp); err != nil {
		t.Fatal(err)
	}
	addrs, routes, _ := linkState(t, iface)
	if want := []string{"10.66.0.9/24", "10.77.0.5/24"}; !slices.Equal(addrs, want) {
		t.Errorf("addresses %v, want %v (the leased one kept)", addrs, want)
	}
	if want := []string{"0.0.0.0/0 via 10.77.0.1", "10.55.0.0/16 via 10.66.0.1"}; !slices.Equal(routes, want) {
		t.Errorf("routes %v, want %v (the DHCP default kept)", routes, want)
	}
	if own := readState(t, stateDir).Interfaces[strings.ToLower(mac)]; own != nil && (len(own.Addresses) > 0 || len(own.Routes) > 0) {
		t.Errorf("state still owns %+v", own)
	}
	os.Stdout.WriteString("PWL: SWITCHED\n")
}

// TestNetworkPartialFailureInNetns (ROOT TEST): what an apply added before
// it failed is owned, so a later config removes it.
func TestNetworkPartialFailureInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkPartialFailure", "PARTIAL")
}

func TestGuestNetworkPartialFailure(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkPartialFailureInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	// IPv6 off on this namespace's eth0 makes adding an IPv6 address fail.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+iface+"/disable_ipv6", []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not the agent's; it keeps 10.77.0.0/24 reachable throughout.
	sh(t, "ip", "addr", "add", "10.77.0.9/24", "dev", iface)
	stateDir := t.TempDir()
	c := New(Options{Root: managerRoot(t, Networkd), StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	apply := func(in config.Interface, wantErr bool) {
		t.Helper()
		in.MAC = config.MustParseMAC(mac)
		res, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{in}})
		t.Logf("actions %q, err %v", res.Actions, err)
		if (err != nil) != wantErr {
			t.Fatalf("apply %+v: err %v, want error %v", in, err, wantErr)
		}
	}
	// 10.77.0.5 is added, then the IPv6 address fails.
	apply(config.Interface{Addresses: mustPfxs("10.77.0.5/24", "2001:db8::5/64")}, true)
	addrs, _, _ := linkState(t, iface)
	if want := []string{"10.77.0.5/24", "10.77.0.9/24"}; !slices.Equal(addrs, want) {
		t.Fatalf("addresses %v, want %v", addrs, want)
	}
	if own := readState(t, stateDir).Interfaces[strings.ToLower(mac)]; own == nil || !slices.Equal(own.Addresses, []string{"10.77.0.5/24"}) {
		t.Errorf("state after a failed address: %+v, want 10.77.0.5/24 owned", own)
	}
	// 10.77.0.5 goes (it was the agent's); the default route and
	// 10.99.0.0/16 are added, then the route via an unreachable gateway fails.
	apply(config.Interface{Addresses: mustPfxs("10.77.0.6/24"), Gateway4: mustAddr("10.77.0.1"), Routes: []config.Route{
		{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254")}, {To: mustPfx("10.98.0.0/16"), Via: mustAddr("192.0.2.1")},
	}}, true)
	addrs, routes, _ := linkState(t, iface)
	if want := []string{"10.77.0.6/24", "10.77.0.9/24"}; !slices.Equal(addrs, want) {
		t.Errorf("addresses %v, want %v (10.77.0.5 was added by the agent before its apply failed)", addrs, want)
	}
	if want := []string{"0.0.0.0/0 via 10.77.0.1", "10.99.0.0/16 via 10.77.0.254"}; !slices.Equal(routes, want) {
		t.Fatalf("routes %v, want %v", routes, want)
	}
	// No gateway and no routes: those the failed apply added go.
	apply(config.Interface{Addresses: mustPfxs("10.77.0.7/24"), Routes: []config.Route{}}, false)
	addrs, routes, _ = linkState(t, iface)
	if want := []string{"10.77.0.7/24", "10.77.0.9/24"}; !slices.Equal(addrs, want) {
		t.Errorf("addresses %v, want %v", addrs, want)
	}
	if len(routes) > 0 {
		t.Errorf("routes %v left, added by the agent before its apply failed", routes)
	}
	own := readState(t, stateDir).Interfaces[strings.ToLower(mac)]
	if own == nil || !slices.Equal(own.Addresses, []string{"10.77.0.7/24"}) || len(own.Routes) > 0 {
		t.Errorf("state %+v, want only 10.77.0.7/24 owned", own)
	}
	os.Stdout.WriteString("PWL: PARTIAL\n")
}

// TestNetworkOfflineInNetns (ROOT TEST): offline, a link of the running
// machine with the configured MAC is left alone; only files are written.
func TestNetworkOfflineInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkOffline", "OFFLINE")
}

func TestGuestNetworkOffline(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkOfflineInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	addrs0, routes0, mtu0 := linkState(t, iface)
	root, stateDir := managerRoot(t, Networkd), t.TempDir()
	c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}})
	res, err := c.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{{
		MAC: config.MustParseMAC(mac), Addresses: mustPfxs("10.77.0.5/24"), Gateway4: mustAddr("10.77.0.1"), MTU: 1400,
	}}})
	if err != nil || !res.Changed {
		t.Fatalf("offline apply: %+v, %v", res, err)
	}
	if addrs, routes, mtu := linkState(t, iface); !slices.Equal(addrs, addrs0) || !slices.Equal(routes, routes0) || mtu != mtu0 {
		t.Errorf("offline apply changed the live link: %v %v mtu %d, was %v %v mtu %d", addrs, routes, mtu, addrs0, routes0, mtu0)
	}
	b, err := os.ReadFile(filepath.Join(root, persistedPath(Networkd, mac, iface)))
	if err != nil || !strings.Contains(string(b), "Address=10.77.0.5/24") {
		t.Errorf("networkd file: %v\n%s", err, b)
	}
	os.Stdout.WriteString("PWL: OFFLINE\n")
}

// TestOfflinePersist (no root needed): offline, the network section is
// persisted by MAC alone, for a MAC no link of this machine has, without
// netlink; ifupdown fails naming the MAC; a switch to DHCP removes the
// agent's file; the state directory is not touched.
func TestOfflinePersist(t *testing.T) {
	const mac = "02:00:5e:7f:31:c4"
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.EqualFold(i.HardwareAddr.String(), mac) {
			t.Skipf("this machine has a link with %s", mac)
		}
	}
	ctx := context.Background()
	static := &config.Network{Interfaces: []config.Interface{{
		MAC: config.MustParseMAC(mac), Addresses: mustPfxs("10.1.0.5/24"), Gateway4: mustAddr("10.1.0.1"), Nameservers: mustAddrs("10.1.0.2"),
	}}}
	dhcp := &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC(mac), DHCP4: true}}}
	for _, m := range []string{Networkd, NetworkManager} {
		root, stateDir := managerRoot(t, m), t.TempDir()
		c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}})
		res, err := c.ApplyNetwork(ctx, static)
		if err != nil {
			t.Fatalf("%s: offline apply: %v", m, err)
		}
		t.Logf("%s: actions %q", m, res.Actions)
		file := filepath.Join(root, persistedPath(m, mac, ""))
		b, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(b), "10.1.0.5/24") || !strings.Contains(strings.ToLower(string(b)), mac) {
			t.Errorf("%s: persisted: %v\n%s", m, err, b)
		}
		if m == NetworkManager && strings.Contains(string(b), "interface-name=") {
			t.Errorf("offline keyfile names an interface:\n%s", b)
		}
		if rc, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); !strings.Contains(string(rc), "nameserver 10.1.0.2") {
			t.Errorf("%s: resolv.conf:\n%s", m, rc)
		}
		if _, err := c.ApplyNetwork(ctx, dhcp); err != nil {
			t.Fatalf("%s: offline dhcp apply: %v", m, err)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s: static file left after switching to DHCP: %v", m, err)
		}
		if ents, _ := os.ReadDir(stateDir); len(ents) > 0 {
			t.Errorf("%s: offline apply wrote state: %v", m, ents)
		}
	}

	root := managerRoot(t, Ifupdown)
	c := New(Options{Root: root, StateDir: t.TempDir(), Runner: noRunner{}})
	if _, err := c.ApplyNetwork(ctx, static); err == nil || !strings.Contains(err.Error(), mac) || !strings.Contains(err.Error(), "ifupdown") {
		t.Errorf("offline ifupdown: err %v, want one naming ifupdown and %s", err, mac)
	}
	// A file written live for this MAC (as ens3) is found by MAC and removed.
	w, _ := parse(static.Interfaces[0])
	os.WriteFile(filepath.Join(root, ifupdownPath("ens3")), must(renderIfupdown(w, "ens3")), 0o644)
	if _, err := c.ApplyNetwork(ctx, dhcp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ifupdownPath("ens3"))); !os.IsNotExist(err) {
		t.Errorf("ifupdown file of %s left after switching to DHCP: %v", mac, err)
	}
}

// runGuest is the host side of a namespace test: it makes a veth pair,
// re-runs the test binary's guestTest inside the guest namespace (with the
// guest NIC's MAC in PWL_MAC) and waits for it to print "PWL: <marker>".
func runGuest(t *testing.T, guestTest, marker string) {
	t.Helper()
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	p := netlab.NewPair(t)
	g := p.StartGuest(t, guestTest, "PWL_MAC="+p.GuestMAC)
	g.Expect(marker, 30*time.Second)
	g.Wait()
}
