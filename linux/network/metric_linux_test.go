package network

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/config"
)

// TestRenderMetric: a route's metric reaches every persisted format, and a
// route without one is written as before.
func TestRenderMetric(t *testing.T) {
	w, err := parse(config.Interface{
		MAC: config.MustParseMAC("52:54:00:AA:BB:CC"), Addresses: mustPfxs("10.1.0.5/24"), Gateway4: mustAddr("10.1.0.1"),
		Routes: []config.Route{
			{To: mustPfx("10.2.0.0/16"), Via: mustAddr("10.1.0.254"), Metric: 250},
			{To: mustPfx("10.3.0.0/16"), Via: mustAddr("10.1.0.254")},
			{To: mustPfx("0.0.0.0/0"), Via: mustAddr("10.1.0.2"), Metric: 900},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		format    string
		text      string
		want, not []string
	}{
		{"networkd", string(must(renderNetworkd(w))),
			[]string{"Destination=10.2.0.0/16\nGateway=10.1.0.254\nMetric=250\n", "Destination=10.3.0.0/16\nGateway=10.1.0.254\n\n", "Destination=0.0.0.0/0\nGateway=10.1.0.2\nMetric=900\n", "Gateway=10.1.0.1\n"},
			[]string{"Metric=0"}},
		{"keyfile", string(must(renderKeyfile(w, "eth0"))),
			[]string{"route1=10.2.0.0/16,10.1.0.254,250\n", "route2=10.3.0.0/16,10.1.0.254\n", "route3=0.0.0.0/0,10.1.0.2,900\n"}, nil},
		{"ifupdown", string(must(renderIfupdown(w, "eth0"))),
			[]string{"up ip route add 10.2.0.0/16 via 10.1.0.254 dev eth0 metric 250\n", "up ip route add 10.3.0.0/16 via 10.1.0.254 dev eth0\n", "up ip route add 0.0.0.0/0 via 10.1.0.2 dev eth0 metric 900\n"}, nil},
	} {
		for _, s := range c.want {
			if !strings.Contains(c.text, s) {
				t.Errorf("%s lacks %q:\n%s", c.format, s, c.text)
			}
		}
		for _, s := range c.not {
			if strings.Contains(c.text, s) {
				t.Errorf("%s has %q:\n%s", c.format, s, c.text)
			}
		}
	}
	// Linux takes any 32-bit metric (Windows' 9999 is its agent's limit).
	big, err := parse(config.Interface{MAC: config.MustParseMAC("52:54:00:00:00:01"), Routes: []config.Route{{To: mustPfx("10.2.0.0/16"), Via: mustAddr("10.1.0.254"), Metric: 4294967295}}})
	if err != nil {
		t.Fatalf("metric 4294967295: %v", err)
	}
	if s := string(must(renderNetworkd(big))); !strings.Contains(s, "Metric=4294967295\n") {
		t.Errorf("metric 4294967295 in networkd:\n%s", s)
	}
}

// TestNetworkRouteMetricInNetns (ROOT TEST): route metrics applied through
// rtnetlink, as ip -j route shows them, in a namespace of its own.
func TestNetworkRouteMetricInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkRouteMetric", "METRICS")
}

// ipRoute is one route of `ip -j route`.
type ipRoute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Metric   uint32 `json:"metric"`
	Protocol string `json:"protocol"`
}

func (r ipRoute) String() string {
	return r.Dst + " via " + r.Gateway + " metric " + strconv.FormatUint(uint64(r.Metric), 10)
}

// ipRoutes lists the routes with a gateway of dev, both families, as
// "dst via gw metric N", sorted.
func ipRoutes(t *testing.T, dev string) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		b, err := exec.Command("ip", "-j", fam, "route", "show", "dev", dev).Output()
		if err != nil {
			t.Fatalf("ip -j %s route: %v", fam, err)
		}
		var rs []ipRoute
		if err := json.Unmarshal(b, &rs); err != nil {
			t.Fatalf("ip -j %s route: %v: %s", fam, err, b)
		}
		for _, r := range rs {
			if r.Gateway != "" {
				out = append(out, r.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestGuestNetworkRouteMetric(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkRouteMetricInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	root, stateDir := managerRoot(t, Networkd), t.TempDir()
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	c := New(Options{Root: root, StateDir: stateDir, Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	ctx := context.Background()
	in := config.Interface{
		MAC: config.MustParseMAC(mac), Addresses: mustPfxs("10.77.0.5/24"), Gateway4: mustAddr("10.77.0.1"),
		Routes: []config.Route{
			{To: mustPfx("10.99.0.0/16"), Via: mustAddr("10.77.0.254"), Metric: 100},
			{To: mustPfx("0.0.0.0/0"), Via: mustAddr("10.77.0.2"), Metric: 500},
			{To: mustPfx("2001:db8:99::/48"), Via: mustAddr("fe80::1")},
		},
	}
	apply := func(step string, wantChanged bool, want []string) []string {
		t.Helper()
		res, err := c.ApplyNetwork(ctx, &config.Network{Interfaces: []config.Interface{in}})
		if err != nil || res.Changed != wantChanged {
			t.Fatalf("%s: %+v, %v (want changed %v)", step, res, err, wantChanged)
		}
		t.Logf("%s: actions %q", step, res.Actions)
		want = slices.Sorted(slices.Values(want))
		if got := ipRoutes(t, iface); !slices.Equal(got, want) {
			t.Fatalf("%s: routes\n%q\nwant\n%q", step, got, want)
		}
		return res.Actions
	}
	// The IPv4 default without a metric is 0, the IPv6 one 1024.
	apply("first", true, []string{
		"default via 10.77.0.1 metric 0", "default via 10.77.0.2 metric 500", "10.99.0.0/16 via 10.77.0.254 metric 100",
		"2001:db8:99::/48 via fe80::1 metric 1024",
	})
	// Someone else's route to one of the document's networks at another
	// metric: a route of its own, which no apply touches.
	sh(t, "ip", "route", "add", "10.99.0.0/16", "via", "10.77.0.250", "dev", iface, "metric", "900")
	foreign := "10.99.0.0/16 via 10.77.0.250 metric 900"
	// ip -j omits an IPv4 metric of 0: check the default route in the text
	// form too, and the persisted file.
	if out, _ := exec.Command("ip", "route", "show", "dev", iface).Output(); !strings.Contains(string(out), "default via 10.77.0.2 proto static metric 500") {
		t.Errorf("ip route:\n%s", out)
	}
	nd, _ := os.ReadFile(filepath.Join(root, persistedPath(Networkd, mac, iface)))
	if !strings.Contains(string(nd), "Destination=10.99.0.0/16\nGateway=10.77.0.254\nMetric=100\n") || !strings.HasSuffix(string(nd), "Destination=2001:db8:99::/48\nGateway=fe80::1\n") {
		t.Errorf("networkd file:\n%s", nd)
	}
	apply("again", false, []string{
		"default via 10.77.0.1 metric 0", "default via 10.77.0.2 metric 500", "10.99.0.0/16 via 10.77.0.254 metric 100",
		foreign, "2001:db8:99::/48 via fe80::1 metric 1024",
	})

	// New metrics: each is a new route for the kernel; the agent's old
	// one goes, and each network keeps one route of the agent's.
	in.Routes[0].Metric, in.Routes[1].Metric, in.Routes[2].Metric = 200, 50, 300
	acts := apply("metrics changed", true, []string{
		"default via 10.77.0.1 metric 0", "default via 10.77.0.2 metric 50", "10.99.0.0/16 via 10.77.0.254 metric 200",
		foreign, "2001:db8:99::/48 via fe80::1 metric 300",
	})
	for _, a := range []string{
		"add route 10.99.0.0/16 via 10.77.0.254 dev " + iface + " metric 200",
		"remove route 10.99.0.0/16 via 10.77.0.254 dev " + iface + " metric 100",
		"remove route 2001:db8:99::/48 via fe80::1 dev " + iface, // at the default metric
	} {
		if !slices.Contains(acts, a) {
			t.Errorf("actions %q lack %q", acts, a)
		}
	}
	// The added route comes before the removal: the network is never
	// without a route of the agent's.
	if add, del := slices.Index(acts, "add route 10.99.0.0/16 via 10.77.0.254 dev "+iface+" metric 200"), slices.Index(acts, "remove route 10.99.0.0/16 via 10.77.0.254 dev "+iface+" metric 100"); add > del {
		t.Errorf("removal before the addition: %q", acts)
	}
	st := readState(t, stateDir)
	if got := st.Interfaces[strings.ToLower(mac)].Routes; !slices.Contains(got, route{To: "10.99.0.0/16", Via: "10.77.0.254", Metric: 200}) || slices.Contains(got, route{To: "10.99.0.0/16", Via: "10.77.0.254", Metric: 100}) {
		t.Errorf("recorded routes %+v", got)
	}

	// Back to the OS default, and a new via with a new metric at once.
	in.Routes[0].Metric, in.Routes[2].Metric = 0, 0
	in.Routes[1] = config.Route{To: mustPfx("0.0.0.0/0"), Via: mustAddr("10.77.0.3"), Metric: 7}
	apply("defaults and a new via", true, []string{
		"default via 10.77.0.1 metric 0", "default via 10.77.0.3 metric 7", "10.99.0.0/16 via 10.77.0.254 metric 0",
		foreign, "2001:db8:99::/48 via fe80::1 metric 1024",
	})
	// A default-metric route is recorded without a metric, as before
	// metrics existed, so a state file of an older agent still matches.
	b, _ := os.ReadFile(filepath.Join(stateDir, stateFile))
	var raw struct {
		Interfaces map[string]struct{ Routes []map[string]any }
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw.Interfaces[strings.ToLower(mac)].Routes {
		if _, ok := r["metric"]; ok != (r["to"] == "0.0.0.0/0" && r["via"] == "10.77.0.3") {
			t.Errorf("recorded route %v: a metric field only for the one route with a metric of its own", r)
		}
	}

	// A new via at the same metric replaces the route in one step.
	in.Routes[0].Via = mustAddr("10.77.0.253")
	acts = apply("new via", true, []string{
		"default via 10.77.0.1 metric 0", "default via 10.77.0.3 metric 7", "10.99.0.0/16 via 10.77.0.253 metric 0",
		foreign, "2001:db8:99::/48 via fe80::1 metric 1024",
	})
	if want := "replace route 10.99.0.0/16 via 10.77.0.254 dev " + iface + " by one via 10.77.0.253"; !slices.Contains(acts, want) {
		t.Errorf("actions %q lack %q", acts, want)
	}

	// Switched to DHCP: the agent's routes go, at whatever metric (the
	// kernel takes the foreign one with the address it went through).
	in = config.Interface{MAC: in.MAC, DHCP4: true}
	acts = apply("dhcp4", true, nil)
	for _, a := range acts {
		if strings.Contains(a, "10.77.0.250") {
			t.Errorf("the agent removed a route it did not add: %q", a)
		}
	}
	os.Stdout.WriteString("PWL: METRICS\n")
}
