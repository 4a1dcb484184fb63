package config

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestRouteMetric: routes[].metric is optional, 1..4294967295 when present
// (Windows' 9999 is its agent's check, not the contract's), and
// two routes of one interface to the same network must differ in via and
// in metric (gateway4 being the default route at the OS default metric).
func TestRouteMetric(t *testing.T) {
	iface := func(fields string) string {
		return `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","addresses":["10.1.0.5/24"]` + fields + `}]}}`
	}
	const p = "network.interfaces[0]."
	tests := []struct {
		name string
		doc  string
		want map[string]string // path → part of the reason; nil: accepted
	}{
		{"absent", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"}]`), nil},
		{"the bounds", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":1},{"to":"10.3.0.0/16","via":"10.1.0.254","metric":4294967295}]`), nil},
		{"above Windows' range (its agent refuses it, not the contract)", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":10000}]`), nil},
		{"zero", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":0}]`),
			map[string]string{p + "routes[0].metric": "between 1 and 4294967295 (omit the field for the OS default"}},
		{"negative", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":-5}]`),
			map[string]string{p + "routes[0].metric": "between 1 and 4294967295"}},
		{"above 32 bits", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":4294967296}]`),
			map[string]string{p + "routes[0].metric": "between 1 and 4294967295"}},
		{"not an integer", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":"10"},{"to":"10.3.0.0/16","via":"10.1.0.254","metric":1.5}]`),
			map[string]string{p + "routes[0].metric": "integer", p + "routes[1].metric": "integer"}},
		{"a backup route: another via and another metric", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"},{"to":"10.2.0.0/16","via":"10.1.0.253","metric":200}]`), nil},
		{"a backup default route beside gateway4", iface(`,"gateway4":"10.1.0.1","routes":[{"to":"0.0.0.0/0","via":"10.1.0.2","metric":100}]`), nil},
		{"a default route with a metric instead of gateway4", iface(`,"routes":[{"to":"0.0.0.0/0","via":"10.1.0.1","metric":50}]`), nil},
		{"same network and metric, another via", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":7},{"to":"10.2.0.0/16","via":"10.1.0.253","metric":7}]`),
			map[string]string{p + "routes[1].metric": "must differ from the metric of " + p + "routes[0]"}},
		{"same network, both without a metric", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"},{"to":"10.2.0.0/16","via":"10.1.0.253"}]`),
			map[string]string{p + "routes[1].metric": "must be set: " + p + "routes[0] is a route to the same network at the OS default metric"}},
		{"same network and via, another metric", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"},{"to":"10.2.0.0/16","via":"10.1.0.254","metric":20}]`),
			map[string]string{p + "routes[1].via": "must differ from the via of " + p + "routes[0]"}},
		{"the very same route twice", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":3},{"to":"10.2.0.0/16","via":"10.1.0.254","metric":3}]`),
			map[string]string{p + "routes[1].via": "must differ from the via of " + p + "routes[0]"}},
		{"a default route without a metric beside gateway4", iface(`,"gateway4":"10.1.0.1","routes":[{"to":"0.0.0.0/0","via":"10.1.0.2"}]`),
			map[string]string{p + "routes[0].metric": "must be set for a default route beside gateway4"}},
		{"a default route through gateway4 with a metric", iface(`,"gateway4":"10.1.0.1","routes":[{"to":"0.0.0.0/0","via":"10.1.0.1","metric":10}]`),
			map[string]string{p + "routes[0].via": "must differ from the via of " + p + "gateway4"}},
		{"a third route is checked against both", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":1},{"to":"10.2.0.0/16","via":"10.1.0.253","metric":2},{"to":"10.2.0.0/16","via":"10.1.0.252","metric":2}]`),
			map[string]string{p + "routes[2].metric": "must differ from the metric of " + p + "routes[1]"}},
		{"other networks do not count, nor other metrics on other interfaces", `{"network":{"interfaces":[` +
			`{"mac":"52:54:00:12:34:56","gateway4":"10.1.0.1","routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"},{"to":"10.3.0.0/16","via":"10.1.0.254"}]},` +
			`{"mac":"52:54:00:12:34:57","routes":[{"to":"0.0.0.0/0","via":"10.1.0.1","metric":100},{"to":"10.2.0.0/16","via":"10.1.0.254","metric":5}]}]}}`, nil},
		{"gateway4 on two interfaces, and one network at one metric on two (netplan, cloud-init and NetworkManager take them; the Linux agent appends the second)", `{"network":{"interfaces":[` +
			`{"mac":"52:54:00:12:34:56","gateway4":"10.1.0.1","routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":5},{"to":"2001:db8:1::/48","via":"fe80::1"}]},` +
			`{"mac":"52:54:00:12:34:57","dhcp4":true},` +
			`{"mac":"52:54:00:12:34:58","gateway4":"10.3.0.1","routes":[{"to":"10.2.0.0/16","via":"10.3.0.254","metric":5},{"to":"2001:db8:1::/48","via":"fe80::1","metric":1024}]},` +
			`{"mac":"52:54:00:12:34:59","routes":[{"to":"0.0.0.0/0","via":"10.4.0.1"}]}]}}`, nil},
		{"IPv6: no metric is Linux's 1024", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","routes":[{"to":"2001:db8:1::/48","via":"fe80::1"},{"to":"2001:db8:1::/48","via":"fe80::2","metric":1024},{"to":"2001:db8:1::/48","via":"fe80::3","metric":1023}]}]}}`,
			map[string]string{p + "routes[1].metric": "must differ from the metric of " + p + "routes[0]"}},
		{"a broken route is not compared", iface(`,"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254"},{"to":"10.2.0.0/16","via":"10.1.0.254","metric":0}]`),
			map[string]string{p + "routes[1].metric": "between 1 and 4294967295"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decode([]byte(tt.doc))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				// Accepted: the canonical encoding keeps the metric.
				b, _ := json.Marshal(d)
				again, err := Decode(b)
				if err != nil {
					t.Fatalf("re-decoding %s: %v", b, err)
				}
				for i, r := range d.Network.Interfaces[0].Routes {
					if got := again.Network.Interfaces[0].Routes[i].Metric; got != r.Metric {
						t.Errorf("routes[%d].metric %d after a round trip, want %d", i, got, r.Metric)
					}
				}
				return
			}
			checkFieldErrors(t, err, tt.want)
		})
	}
}

// TestRouteMetricDecoded: the value lands in Route.Metric, and an absent
// metric is not encoded (documents without one keep their bytes).
func TestRouteMetricDecoded(t *testing.T) {
	d, err := Decode([]byte(`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":300},{"to":"10.3.0.0/16","via":"10.1.0.254"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	rs := d.Network.Interfaces[0].Routes
	if rs[0].Metric != 300 || rs[1].Metric != 0 {
		t.Fatalf("metrics %d and %d, want 300 and 0 (absent)", rs[0].Metric, rs[1].Metric)
	}
	b, _ := json.Marshal(d)
	const want = `"routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":300},{"to":"10.3.0.0/16","via":"10.1.0.254"}]`
	if !strings.Contains(string(b), want) {
		t.Errorf("encoded %s, want it to hold %s", b, want)
	}
}

// TestRouteMetricTyped: a typed entry the decoder never saw (the agents'
// second wall) breaks the same rules under its own paths.
func TestRouteMetricTyped(t *testing.T) {
	in := Interface{
		MAC:      MustParseMAC("52:54:00:12:34:56"),
		Gateway4: netip.MustParseAddr("10.1.0.1"),
		Routes: []Route{
			{To: netip.MustParsePrefix("10.2.0.0/16"), Via: netip.MustParseAddr("10.1.0.254"), Metric: 4294967295},
			{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.1.0.2")},
			{To: netip.MustParsePrefix("10.4.0.0/16"), Via: netip.MustParseAddr("10.1.0.254"), Metric: 9999},
		},
	}
	checkFieldErrors(t, in.Validate(), map[string]string{
		"routes[1].metric": "beside gateway4",
	})
}

// checkFieldErrors asserts that err is a *ValidationError with exactly the
// paths of want, each reason holding want's text.
func checkFieldErrors(t *testing.T, err error, want map[string]string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	got := map[string]string{}
	for _, f := range ve.Fields {
		got[f.Path] = f.Reason
	}
	for path, sub := range want {
		if r, ok := got[path]; !ok {
			t.Errorf("no error for %q; got %v", path, ve.Fields)
		} else if !strings.Contains(r, sub) {
			t.Errorf("%s: reason %q does not mention %q", path, r, sub)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected error for %q: %s", path, got[path])
		}
	}
}
