package plan

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// windowsDefaultMetric stands for the metric Windows reports for a row
// created without one (the tests must not depend on its value).
const windowsDefaultMetric = 256

// simulateRoutes applies o's route operations to rs the way iphlpapi does:
// rows are keyed by network and via; CreateIpForwardEntry2 of an existing
// key changes nothing (ERROR_OBJECT_ALREADY_EXISTS, which the platform
// accepts); a row created without a metric gets Windows' own.
func simulateRoutes(rs []Route, o Ops) []Route {
	rs = slices.DeleteFunc(slices.Clone(rs), func(r Route) bool { return findRoute(o.DelRoutes, r) >= 0 })
	for _, r := range o.AddRoutes {
		if findRoute(rs, r) < 0 {
			if r.Metric == 0 {
				r.Metric = windowsDefaultMetric
			}
			rs = append(rs, r)
		}
	}
	for _, r := range o.SetRoutes {
		if i := findRoute(rs, r); i >= 0 {
			rs[i].Metric = r.Metric
		}
	}
	return rs
}

func TestParseInterfaceMetric(t *testing.T) {
	w, err := ParseInterface(config.Interface{
		MAC: config.MustParseMAC("52:54:00:12:34:56"), Gateway4: addr("10.1.0.1"),
		Routes: []config.Route{{To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254"), Metric: 100}, {To: DefaultRoute, Via: addr("10.1.0.2"), Metric: 500}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{To: DefaultRoute, Via: addr("10.1.0.1")}, {To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254"), Metric: 100}, {To: DefaultRoute, Via: addr("10.1.0.2"), Metric: 500}}
	if !reflect.DeepEqual(w.Routes, want) {
		t.Errorf("routes %v, want %v", w.Routes, want)
	}
	// The document's rule, checked again for an entry that never went
	// through the IMDS.
	if _, err := ParseInterface(config.Interface{MAC: config.MustParseMAC("52:54:00:12:34:56"), Routes: []config.Route{{To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254"), Metric: 10000}}}); err == nil {
		t.Error("metric 10000 parsed")
	}
}

func TestDiffRouteMetric(t *testing.T) {
	k := Route{To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254")}
	m := func(r Route, metric uint32) Route { r.Metric = metric; return r }
	gw := Route{To: DefaultRoute, Via: addr("10.1.0.1")}
	backup := Route{To: DefaultRoute, Via: addr("10.1.0.2"), Metric: 500}
	tests := []struct {
		name       string
		want       Want
		have       []Route
		owned      []Route
		add, del   []Route
		set        []Route
		nextOwned  []Route
		wantAction string
	}{
		{name: "a new route with a metric", want: Want{Routes: []Route{m(k, 100)}, HasRoutes: true},
			add: []Route{m(k, 100)}, nextOwned: []Route{m(k, 100)}, wantAction: "add route 10.2.0.0/16 via 10.1.0.254 metric 100 on Ethernet"},
		{name: "the row has the metric", want: Want{Routes: []Route{m(k, 100)}, HasRoutes: true},
			have: []Route{m(k, 100)}, owned: []Route{m(k, 100)}, nextOwned: []Route{m(k, 100)}},
		{name: "a changed metric is set on the agent's row", want: Want{Routes: []Route{m(k, 200)}, HasRoutes: true},
			have: []Route{m(k, 100)}, owned: []Route{m(k, 100)}, set: []Route{m(k, 200)}, nextOwned: []Route{m(k, 200)},
			wantAction: "set the metric of route 10.2.0.0/16 via 10.1.0.254 on Ethernet to 200"},
		{name: "a row of Windows' default metric takes the document's", want: Want{Routes: []Route{m(k, 100)}, HasRoutes: true},
			have: []Route{m(k, windowsDefaultMetric)}, owned: []Route{k}, set: []Route{m(k, 100)}, nextOwned: []Route{m(k, 100)}},
		{name: "someone else's row to the document's route takes its metric and becomes the agent's", want: Want{Routes: []Route{m(k, 100)}, HasRoutes: true},
			have: []Route{m(k, 20)}, set: []Route{m(k, 100)}, nextOwned: []Route{m(k, 100)}},
		{name: "the agent's metric dropped: a new row at Windows' default", want: Want{Routes: []Route{k}, HasRoutes: true},
			have: []Route{m(k, 100)}, owned: []Route{m(k, 100)}, del: []Route{m(k, 100)}, add: []Route{k}, nextOwned: []Route{k}},
		{name: "no metric, and Windows' own on the agent's row", want: Want{Routes: []Route{k}, HasRoutes: true},
			have: []Route{m(k, windowsDefaultMetric)}, owned: []Route{k}, nextOwned: []Route{k}},
		{name: "no metric, and someone else's on a row the agent did not add", want: Want{Routes: []Route{k}, HasRoutes: true},
			have: []Route{m(k, 300)}},
		{name: "no metric, and the agent's row changed by hand since", want: Want{Routes: []Route{k}, HasRoutes: true},
			have: []Route{m(k, 300)}, owned: []Route{m(k, 100)}, nextOwned: []Route{m(k, 100)}},
		{name: "a route no longer wanted goes, whatever its metric now", want: Want{Routes: []Route{}, HasRoutes: true},
			have: []Route{m(k, 300)}, owned: []Route{m(k, 100)}, del: []Route{m(k, 300)}},
		{name: "a backup default route beside gateway4", want: Want{Routes: []Route{gw, backup}, HasGateway: true, HasRoutes: true},
			have: []Route{m(gw, windowsDefaultMetric)}, owned: []Route{gw}, add: []Route{backup}, nextOwned: []Route{gw, backup}},
		{name: "routes[] without the backup default route: it goes, gateway4's stays", want: Want{Routes: []Route{}, HasRoutes: true},
			have: []Route{m(gw, windowsDefaultMetric), backup}, owned: []Route{gw, backup}, del: []Route{backup}, nextOwned: []Route{gw}},
		{name: "gateway4 gone from the document: its route stays, the backup too", want: Want{},
			have: []Route{m(gw, windowsDefaultMetric), backup}, owned: []Route{gw, backup}, nextOwned: []Route{gw, backup}},
		{name: "gateway4 now names a route's via", want: Want{Routes: []Route{{To: DefaultRoute, Via: addr("10.1.0.2")}}, HasGateway: true},
			have: []Route{backup}, owned: []Route{backup}, del: []Route{backup}, add: []Route{{To: DefaultRoute, Via: addr("10.1.0.2")}},
			nextOwned: []Route{{To: DefaultRoute, Via: addr("10.1.0.2")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Diff(tt.want, false, Have{Routes: tt.have}, Owned{Routes: tt.owned})
			if !slices.Equal(o.AddRoutes, tt.add) || !slices.Equal(o.DelRoutes, tt.del) || !slices.Equal(o.SetRoutes, tt.set) {
				t.Fatalf("add %v del %v set %v; want add %v del %v set %v", o.AddRoutes, o.DelRoutes, o.SetRoutes, tt.add, tt.del, tt.set)
			}
			if o.Empty() != (len(tt.add)+len(tt.del)+len(tt.set) == 0) {
				t.Errorf("Empty() = %v for %+v", o.Empty(), o)
			}
			if n := NextOwned(Owned{Routes: tt.owned}, o); !slices.Equal(n.Routes, tt.nextOwned) {
				t.Errorf("owned after: %v, want %v", n.Routes, tt.nextOwned)
			}
			if tt.wantAction != "" && !slices.Contains(o.Actions("Ethernet"), tt.wantAction) {
				t.Errorf("actions %q lack %q", o.Actions("Ethernet"), tt.wantAction)
			}
			// One apply reaches the document: nothing more to do.
			after := Have{Routes: simulateRoutes(tt.have, o)}
			if again := Diff(tt.want, false, after, NextOwned(Owned{Routes: tt.owned}, o)); !again.Empty() {
				t.Errorf("second diff %+v (routes after %v)", again, after.Routes)
			}
		})
	}
}

// TestDiffRouteMetricConverges: over random documents, rows and records
// with metrics, one apply reaches the document (a second Diff is empty),
// every wanted route ends with the document's metric when it gives one,
// and nothing the agent did not add is removed.
func TestDiffRouteMetricConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	keys := []Route{{To: DefaultRoute, Via: addr("10.0.0.254")}, {To: DefaultRoute, Via: addr("10.0.0.253")}, {To: pfx("10.2.0.0/16"), Via: addr("10.0.0.254")}, {To: pfx("10.2.0.0/16"), Via: addr("10.0.0.253")}}
	metrics := []uint32{0, 0, 10, 20, windowsDefaultMetric}
	metric := func() uint32 { return metrics[r.IntN(len(metrics))] }
	for i := range 2000 {
		var want Want
		if r.IntN(2) == 0 {
			want.HasGateway = true
			want.Routes = append(want.Routes, keys[r.IntN(2)]) // gateway4: no metric
		}
		if r.IntN(2) == 0 {
			want.HasRoutes = true
			for _, j := range r.Perm(len(keys))[:r.IntN(3)] {
				k := keys[j]
				if findRoute(want.Routes, k) >= 0 {
					continue // the document's rule: one route per key
				}
				k.Metric = metric()
				if k.To == DefaultRoute && k.Metric == 0 && want.HasGateway {
					k.Metric = 30 // the document's rule: a backup default route has a metric
				}
				want.Routes = append(want.Routes, k)
			}
		}
		var have Have
		var owned Owned
		for _, j := range r.Perm(len(keys))[:r.IntN(len(keys)+1)] {
			row := keys[j]
			row.Metric = metric()
			if row.Metric == 0 {
				row.Metric = windowsDefaultMetric
			}
			have.Routes = append(have.Routes, row)
			if r.IntN(2) == 0 {
				rec := row
				if r.IntN(2) == 0 {
					rec.Metric = 0 // added without a metric
				}
				owned.Routes = append(owned.Routes, rec)
			}
		}
		o := Diff(want, false, have, owned)
		for _, d := range o.DelRoutes {
			if findRoute(owned.Routes, d) < 0 {
				t.Fatalf("case %d: removes foreign route %v", i, d)
			}
		}
		after := simulateRoutes(have.Routes, o)
		for _, w := range want.Routes {
			j := findRoute(after, w)
			if j < 0 || (w.Metric != 0 && after[j].Metric != w.Metric) {
				t.Fatalf("case %d: %v not applied: routes after %v\nwant %+v\nhave %+v\nowned %+v\nops %+v", i, w, after, want, have, owned, o)
			}
		}
		if again := Diff(want, false, Have{Routes: after}, NextOwned(owned, o)); !again.Empty() {
			t.Fatalf("case %d: second diff not empty:\nwant %+v\nhave %+v\nowned %+v\nops %+v\nagain %+v", i, want, have, owned, o, again)
		}
	}
}
