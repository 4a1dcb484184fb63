package plan

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// simulate applies ops to have the way the Windows code does.
func simulate(h Have, o Ops) Have {
	if o.EnableDHCP {
		h.DHCP, h.Addresses = true, nil
	}
	if o.ResetDNS {
		h.DNS = nil
	}
	if o.DisableDHCP {
		h.DHCP = false
	}
	h.Addresses = slices.DeleteFunc(slices.Clone(h.Addresses), func(p netip.Prefix) bool { return slices.Contains(o.DelAddrs, p) })
	for _, p := range o.AddAddrs {
		if !slices.Contains(h.Addresses, p) {
			h.Addresses = append(h.Addresses, p)
		}
	}
	h.Routes = slices.DeleteFunc(slices.Clone(h.Routes), func(r Route) bool { return slices.Contains(o.DelRoutes, r) })
	for _, r := range o.AddRoutes {
		if !slices.Contains(h.Routes, r) {
			h.Routes = append(h.Routes, r)
		}
	}
	if o.SetMTU != 0 {
		h.MTU = o.SetMTU
	}
	if o.SetDNS {
		h.DNS = o.DNS
	}
	if o.SetSearch {
		h.Search = o.Search
	}
	return h
}

// TestDiffConverges checks the reconcile property over random documents
// and machines: one application reaches the wanted state (a second Diff is
// empty), and the agent never removes what it did not add.
func TestDiffConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs := []netip.Prefix{pfx("10.0.0.1/24"), pfx("10.0.0.2/24"), pfx("10.0.1.1/16"), pfx("192.168.0.9/24")}
	gws := []netip.Addr{addr("10.0.0.254"), addr("10.0.0.253")}
	routes := []Route{{To: DefaultRoute, Via: gws[0]}, {To: DefaultRoute, Via: gws[1]}, {To: pfx("10.2.0.0/16"), Via: gws[0]}, {To: pfx("10.3.0.0/16"), Via: gws[1]}}
	pick := func(n int) []int { return r.Perm(n)[:r.IntN(n+1)] }
	for i := range 500 {
		var want Want
		if r.IntN(4) > 0 {
			want.Addresses = []netip.Prefix{}
			for _, j := range pick(len(addrs)) {
				want.Addresses = append(want.Addresses, addrs[j])
			}
		}
		if r.IntN(2) == 0 {
			want.HasGateway = true
			want.Routes = append(want.Routes, Route{To: DefaultRoute, Via: gws[r.IntN(2)]})
		}
		if r.IntN(2) == 0 {
			want.HasRoutes = true
			for _, j := range pick(2) {
				want.Routes = append(want.Routes, routes[2+j])
			}
		}
		if r.IntN(2) == 0 {
			want.MTU = 1400 + r.IntN(200)
		}
		if r.IntN(2) == 0 {
			want.DNS = []netip.Addr{gws[r.IntN(2)]}
			if r.IntN(2) == 0 { // a dual-stack document, in any order
				want.DNS = slices.Insert(want.DNS, r.IntN(2), addr("2001:db8::53"))
			}
		}
		have := Have{DHCP: r.IntN(2) == 0, MTU: 1500}
		if r.IntN(2) == 0 {
			have.DNS = []netip.Addr{gws[1]}
		}
		for _, j := range pick(len(addrs)) {
			have.Addresses = append(have.Addresses, addrs[j])
		}
		for _, j := range pick(len(routes)) {
			have.Routes = append(have.Routes, routes[j])
		}
		var owned Owned
		for _, p := range have.Addresses {
			if r.IntN(2) == 0 {
				owned.Addresses = append(owned.Addresses, p)
			}
		}
		for _, rt := range have.Routes {
			if r.IntN(2) == 0 {
				owned.Routes = append(owned.Routes, rt)
			}
		}
		dhcp4 := r.IntN(5) == 0
		o := Diff(want, dhcp4, have, owned)
		for _, p := range o.DelAddrs {
			if !slices.Contains(owned.Addresses, p) {
				t.Fatalf("case %d: removes foreign address %v", i, p)
			}
		}
		for _, rt := range o.DelRoutes {
			if !slices.Contains(owned.Routes, rt) {
				t.Fatalf("case %d: removes foreign route %v", i, rt)
			}
		}
		if o.EnableDHCP && (!dhcp4 || have.DHCP) {
			t.Fatalf("case %d: DHCP enabled though dhcp4=%v and DHCP on=%v", i, dhcp4, have.DHCP)
		}
		for _, p := range o.AddAddrs {
			if p != o.Primary && (len(want.Addresses) == 0 || p == want.Addresses[0]) {
				t.Fatalf("case %d: primary %v, but %v added (first wanted %v)", i, o.Primary, p, want.Addresses)
			}
		}
		after := simulate(have, o)
		// Windows reads the servers back family by family.
		v4, v6 := SplitDNS(after.DNS)
		after.DNS = append(v6, v4...)
		nextOwned := NextOwned(owned, o)
		if again := Diff(want, dhcp4, after, nextOwned); !again.Empty() {
			t.Fatalf("case %d: second diff not empty:\nwant %+v\nhave %+v\nops %+v\nagain %+v", i, want, have, o, again)
		}
	}
}
