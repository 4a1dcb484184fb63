package plan

import (
	"net/netip"
	"testing"
)

// TestDiffDHCPOffRecreatesRoutes: a document that keeps an interface's
// DHCP address and gateway but makes them static (the usual "pin what the
// lease gave") finds the lease's default route in have, a NetMgmt row like
// a static one. netsh's switch to static takes DHCP's routes away, so the
// route must be created after it, else the interface is left without a
// default route and the step still reports success.
func TestDiffDHCPOffRecreatesRoutes(t *testing.T) {
	gw := Route{To: DefaultRoute, Via: addr("10.1.0.1")}
	extra := Route{To: pfx("198.51.100.0/24"), Via: addr("10.1.0.254"), Metric: 50}
	want := Want{
		Addresses:  []netip.Prefix{pfx("10.1.0.5/24"), pfx("10.1.0.9/32")},
		Routes:     []Route{gw, extra},
		HasGateway: true, HasRoutes: true,
	}
	// The lease's routes (the gateway, and option 121's route with
	// Windows' metric) as GetIpForwardTable2 lists them before the switch.
	leased := Have{DHCP: true, Routes: []Route{gw, {To: extra.To, Via: extra.Via, Metric: 256}}}
	o := Diff(want, false, leased, Owned{})
	if !o.DisableDHCP {
		t.Fatalf("DHCP not turned off: %+v", o)
	}
	for _, r := range want.Routes {
		if findRoute(o.AddRoutes, r) < 0 {
			t.Errorf("route %s not created after the switch to static (AddRoutes %v): DHCP's copy goes with DHCP", r, o.AddRoutes)
		}
	}
	if len(o.SetRoutes) != 0 {
		t.Errorf("SetRoutes %v: a route DHCP had goes with it; it is created, not changed", o.SetRoutes)
	}
	// Once static, the routes are the agent's and the next diff is empty.
	owned := NextOwned(Owned{}, o)
	static := Have{Addresses: want.Addresses, Routes: want.Routes}
	if o := Diff(want, false, static, owned); !o.Empty() {
		t.Errorf("diff after the switch not empty: %+v", o)
	}
	// A static interface keeps the old rule: a route already there is
	// neither created again nor recorded as the agent's.
	if o := Diff(want, false, Have{Addresses: want.Addresses, Routes: want.Routes}, Owned{}); len(o.AddRoutes) != 0 {
		t.Errorf("static interface: AddRoutes %v for routes already there", o.AddRoutes)
	}
}

// TestDiffDHCPOffKeepsNameServers: a document that turns DHCP off without
// nameservers keeps the name servers the interface uses (the lease's) as
// static ones, since Windows drops DHCP's with DHCP and an absent section
// leaves that part of the machine as it is; with nameservers: [] none are set;
// the document's own list wins; a static interface is not touched.
func TestDiffDHCPOffKeepsNameServers(t *testing.T) {
	leaseDNS := []netip.Addr{addr("10.1.0.2"), addr("2001:db8::53")}
	want := Want{Addresses: []netip.Prefix{pfx("10.1.0.5/24")}}
	leased := Have{DHCP: true, InUse: leaseDNS}
	o := Diff(want, false, leased, Owned{})
	if !o.DisableDHCP || !o.SetDNS || !SameDNS(o.DNS, leaseDNS) {
		t.Errorf("DHCP off without nameservers: %+v; want the lease's %v kept as static", o, leaseDNS)
	}
	// Once set, the servers are static: nothing more to do.
	static := Have{Addresses: want.Addresses, DNS: leaseDNS, InUse: leaseDNS}
	if o := Diff(want, false, static, NextOwned(Owned{}, o)); !o.Empty() {
		t.Errorf("diff after the switch not empty: %+v", o)
	}
	clear := want
	clear.DNS = []netip.Addr{}
	if o := Diff(clear, false, leased, Owned{}); o.SetDNS && len(o.DNS) != 0 {
		t.Errorf("nameservers: [] → %+v; want no static servers (DHCP's go with DHCP)", o)
	}
	own := want
	own.DNS = []netip.Addr{addr("10.9.9.9")}
	if o := Diff(own, false, leased, Owned{}); !o.SetDNS || !SameDNS(o.DNS, own.DNS) {
		t.Errorf("document's nameservers → %+v; want %v", o, own.DNS)
	}
	if o := Diff(want, false, Have{Addresses: want.Addresses, InUse: leaseDNS}, Owned{}); o.SetDNS {
		t.Errorf("static interface without nameservers: %+v; want its name servers left alone", o)
	}
	// No servers in use: nothing to keep.
	if o := Diff(want, false, Have{DHCP: true}, Owned{}); o.SetDNS {
		t.Errorf("DHCP off, no servers in use: %+v", o)
	}
}
