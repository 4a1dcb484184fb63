package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/prewarm/prewarm/shared/config"
)

// Route is a static route through a gateway. Windows keys a route by its
// interface, network and via (Key): the metric is a property of the row,
// which SetIpForwardEntry2 changes in place.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
	// Metric is the route's metric (MIB_IPFORWARD_ROW2.Metric, to which
	// Windows adds the interface metric). In a Want and an Owned record 0
	// is the document's "none": the row keeps what Windows gives it. In a
	// Have it is what Windows reports.
	Metric uint32 `json:",omitempty"`
}

func (r Route) String() string {
	s := r.To.String() + " via " + r.Via.String()
	if r.Metric != 0 {
		s += " metric " + strconv.FormatUint(uint64(r.Metric), 10)
	}
	return s
}

// Key is r without its metric: what Windows tells routes apart by.
func (r Route) Key() Route { return Route{To: r.To, Via: r.Via} }

// findRoute is the index of the route of rs with r's key, or -1.
func findRoute(rs []Route, r Route) int {
	return slices.IndexFunc(rs, func(x Route) bool { return x.Key() == r.Key() })
}

// DefaultRoute is the destination of a default gateway's route.
var DefaultRoute = netip.MustParsePrefix("0.0.0.0/0")

// Want is the static configuration the document asks of one interface.
type Want struct {
	MAC       string
	Addresses []netip.Prefix // nil: leave addresses alone
	Routes    []Route        // includes the default route of gateway4
	// HasGateway and HasRoutes say whether gateway4 and routes were in the
	// document at all: only then may the agent remove a default route or
	// other routes it added earlier.
	HasGateway, HasRoutes bool
	MTU                   int          // 0: leave alone
	DNS                   []netip.Addr // nil: leave alone
	Search                []string     // nil: leave alone
}

// Have is the current state of one interface, as far as the agent manages it.
type Have struct {
	DHCP      bool
	Addresses []netip.Prefix // manual (static) IPv4 addresses
	Routes    []Route        // static IPv4 routes with a gateway
	MTU       int
	DNS       []netip.Addr // statically configured name servers
	// InUse are the name servers the interface uses now, whichever their
	// source (static or DHCP's): what DisableDHCP keeps as static ones when
	// the document names none.
	InUse  []netip.Addr
	Search []string
}

// Owned records what the agent itself added to an interface, so that a
// later document may take it away again; nothing else is ever removed.
type Owned struct {
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Routes    []Route        `json:"routes,omitempty"`
}

// Ops is what to do to one interface, in order: remove routes, enable or
// disable DHCP, remove and add addresses, add and set routes, then MTU and
// DNS. The routes go first: after DHCP is back on, a lease's route may have
// the key of one the agent added.
type Ops struct {
	// EnableDHCP turns DHCP back on (the document says dhcp4 where the
	// interface is static): Windows drops the static addresses with it.
	// ResetDNS then takes the name servers from DHCP again too, when the
	// document names none.
	EnableDHCP bool
	ResetDNS   bool
	// DisableDHCP turns DHCP off, setting Static as the first static
	// address in the same operation (Windows has no "DHCP off" without one).
	DisableDHCP bool
	Static      netip.Prefix
	// Primary is the document's first address, the one Windows may use as
	// a source address; every other address the agent adds is
	// SkipAsSource (netsh's skipassource=true): otherwise Windows may pick
	// any of them as the source of outgoing connections.
	Primary   netip.Prefix
	DelAddrs  []netip.Prefix
	AddAddrs  []netip.Prefix
	DelRoutes []Route
	AddRoutes []Route
	// SetRoutes are rows that exist with another metric than the
	// document's: the metric is set on the row (SetIpForwardEntry2).
	SetRoutes []Route
	SetMTU    int
	SetDNS    bool
	DNS       []netip.Addr
	SetSearch bool
	Search    []string
}

// Empty reports whether there is nothing to do.
func (o Ops) Empty() bool {
	return !o.EnableDHCP && !o.ResetDNS && !o.DisableDHCP && len(o.DelAddrs)+len(o.AddAddrs)+len(o.DelRoutes)+len(o.AddRoutes)+len(o.SetRoutes) == 0 &&
		o.SetMTU == 0 && !o.SetDNS && !o.SetSearch
}

// Actions describes o for the step's result.
func (o Ops) Actions(iface string) []string {
	var a []string
	if o.EnableDHCP {
		a = append(a, fmt.Sprintf("enable DHCP on %s", iface))
	}
	if o.ResetDNS {
		a = append(a, fmt.Sprintf("take the name servers of %s from DHCP", iface))
	}
	if o.DisableDHCP {
		a = append(a, fmt.Sprintf("disable DHCP on %s", iface))
	}
	for _, p := range o.DelAddrs {
		a = append(a, fmt.Sprintf("remove address %s from %s", p, iface))
	}
	for _, p := range o.AddAddrs {
		a = append(a, fmt.Sprintf("add address %s to %s", p, iface))
	}
	for _, r := range o.DelRoutes {
		a = append(a, fmt.Sprintf("remove route %s from %s", r, iface))
	}
	for _, r := range o.AddRoutes {
		a = append(a, fmt.Sprintf("add route %s on %s", r, iface))
	}
	for _, r := range o.SetRoutes {
		a = append(a, fmt.Sprintf("set the metric of route %s on %s to %d", r.Key(), iface, r.Metric))
	}
	if o.SetMTU != 0 {
		a = append(a, fmt.Sprintf("set MTU of %s to %d", iface, o.SetMTU))
	}
	if o.SetDNS {
		a = append(a, fmt.Sprintf("set name servers of %s to %v", iface, o.DNS))
	}
	if o.SetSearch {
		a = append(a, fmt.Sprintf("set search domains of %s to %v", iface, o.Search))
	}
	return a
}

// MinMTU is the smallest MTU the Windows agent sets: IPv4's minimum
// datagram size a host must accept (RFC 791), below which Windows refuses
// an interface MTU.
const MinMTU = 576

// ParseInterface turns one interface of the document into a Want. It
// reports every unusable value, not only the first: first the document's
// own rules (config.Interface.Validate, the same check the IMDS made, for an
// entry that never went through it: zones, list syntax in search domains),
// then what Windows cannot do (IPv6 addresses and routes, an MTU below
// MinMTU).
func ParseInterface(in config.Interface) (Want, error) {
	w := Want{MAC: in.MAC.String(), MTU: in.MTU}
	var errs []string
	var ve *config.ValidationError
	if err := in.Validate(); errors.As(err, &ve) {
		for _, f := range ve.Fields {
			errs = append(errs, f.Path+": "+f.Reason)
		}
	} else if err != nil {
		errs = append(errs, err.Error())
	}
	if in.Addresses != nil {
		w.Addresses = []netip.Prefix{}
	}
	for i, p := range in.Addresses {
		if p.IsValid() && !p.Addr().Is4() {
			errs = append(errs, fmt.Sprintf("addresses[%d] %s: want an IPv4 address with prefix length (the Windows agent configures IPv4 only)", i, p))
		}
		w.Addresses = append(w.Addresses, p)
	}
	if gw := in.Gateway4; gw.IsValid() {
		w.Routes = append(w.Routes, Route{To: DefaultRoute, Via: gw})
		w.HasGateway = true
	}
	w.HasRoutes = in.Routes != nil
	for i, r := range in.Routes {
		if r.To.IsValid() && !r.To.Addr().Is4() {
			errs = append(errs, fmt.Sprintf("routes[%d] %s via %s: want an IPv4 route (the Windows agent configures IPv4 only)", i, r.To, r.Via))
		}
		if r.Metric > MaxRouteMetric {
			errs = append(errs, fmt.Sprintf("routes[%d].metric: %s", i, routeMetricRule))
		}
		w.Routes = append(w.Routes, Route{To: r.To, Via: r.Via, Metric: r.Metric})
	}
	if in.Nameservers != nil {
		w.DNS = slices.Clone(in.Nameservers)
	}
	if in.SearchDomains != nil {
		w.Search = slices.Clone(in.SearchDomains)
	}
	if in.MTU < 0 || (in.MTU > 0 && in.MTU < MinMTU) {
		errs = append(errs, fmt.Sprintf("mtu %d: below IPv4's minimum of %d", in.MTU, MinMTU))
	}
	if len(errs) > 0 {
		return w, fmt.Errorf("interface %s: %s", in.MAC, strings.Join(errs, "; "))
	}
	return w, nil
}

// Diff compares the wanted with the current state of an interface. Static
// addresses and routes are added when missing; an address or route is
// removed only when the agent added it (owned) and the document no longer
// wants it. DNS and MTU are set when they differ. dhcp4 on a static
// interface turns DHCP back on (which drops its static addresses: the
// document asked for DHCP), and with dhcp4 every route and address the
// agent added goes, as on Linux: DHCP owns the interface's addresses and
// routes (the document may not have any beside dhcp4). Turning DHCP off
// without nameservers in the document keeps the name servers in use
// (DHCP's) as static ones: an absent section leaves that part of the
// machine as it is, and Windows would otherwise leave the interface with
// none.
func Diff(want Want, dhcp4 bool, have Have, owned Owned) Ops {
	var o Ops
	if dhcp4 {
		o.EnableDHCP = !have.DHCP
		o.ResetDNS = o.EnableDHCP && want.DNS == nil && len(have.DNS) > 0
		for _, r := range owned.Routes {
			if i := findRoute(have.Routes, r); i >= 0 {
				o.DelRoutes = append(o.DelRoutes, have.Routes[i])
			}
		}
		if !o.EnableDHCP {
			// Windows drops the static addresses with the switch;
			// without one they are the agent's to remove.
			for _, p := range owned.Addresses {
				if slices.Contains(have.Addresses, p) {
					o.DelAddrs = append(o.DelAddrs, p)
				}
			}
		}
		if want.MTU != 0 && want.MTU != have.MTU {
			o.SetMTU = want.MTU
		}
		if want.DNS != nil && !SameDNS(want.DNS, have.DNS) {
			o.SetDNS, o.DNS = true, want.DNS
		}
		if want.Search != nil && !equalFold(want.Search, have.Search) {
			o.SetSearch, o.Search = true, want.Search
		}
		return o
	}
	if want.Addresses != nil {
		if len(want.Addresses) > 0 {
			o.Primary = want.Addresses[0]
		}
		if have.DHCP && len(want.Addresses) > 0 {
			o.DisableDHCP, o.Static = true, want.Addresses[0]
		}
		for _, p := range want.Addresses {
			if !slices.Contains(have.Addresses, p) {
				o.AddAddrs = append(o.AddAddrs, p)
			}
		}
		for _, p := range owned.Addresses {
			if !slices.Contains(want.Addresses, p) && slices.Contains(have.Addresses, p) {
				o.DelAddrs = append(o.DelAddrs, p)
			}
		}
	}
	// Turning DHCP off takes what DHCP configured with it, its default
	// gateway's route (a NetMgmt row like a static one, so have lists it)
	// included, and have was read before the switch: every route the
	// document wants is created after it. One that outlived the switch is
	// ERROR_OBJECT_ALREADY_EXISTS, which apply accepts.
	haveRoutes := have.Routes
	if o.DisableDHCP {
		haveRoutes = nil
	}
	// Routes are matched by Key. A row with another metric than the
	// document's gets the document's; a document without a metric leaves
	// a row's metric alone, unless it is the one the agent set (owned),
	// which only a new row takes back to Windows' default.
	for _, r := range want.Routes {
		i := findRoute(haveRoutes, r)
		switch {
		case i < 0:
			o.AddRoutes = append(o.AddRoutes, r)
		case r.Metric != 0 && have.Routes[i].Metric != r.Metric:
			o.SetRoutes = append(o.SetRoutes, r)
		case r.Metric == 0:
			if j := findRoute(owned.Routes, r); j >= 0 && owned.Routes[j].Metric != 0 && owned.Routes[j].Metric == have.Routes[i].Metric {
				o.DelRoutes = append(o.DelRoutes, have.Routes[i])
				o.AddRoutes = append(o.AddRoutes, r)
			}
		}
	}
	for _, r := range owned.Routes {
		// The default route without a metric is gateway4's (a routes[]
		// entry to 0.0.0.0/0 beside gateway4 has a metric of its own).
		inDoc := want.HasRoutes
		if r.To == DefaultRoute && r.Metric == 0 {
			inDoc = want.HasGateway
		}
		if i := findRoute(have.Routes, r); inDoc && findRoute(want.Routes, r) < 0 && i >= 0 {
			o.DelRoutes = append(o.DelRoutes, have.Routes[i])
		}
	}
	if want.MTU != 0 && want.MTU != have.MTU {
		o.SetMTU = want.MTU
	}
	if want.DNS != nil && !SameDNS(want.DNS, have.DNS) {
		o.SetDNS, o.DNS = true, want.DNS
	}
	if want.DNS == nil && o.DisableDHCP && len(have.InUse) > 0 {
		o.SetDNS, o.DNS = true, slices.Clone(have.InUse)
	}
	if want.Search != nil && !equalFold(want.Search, have.Search) {
		o.SetSearch, o.Search = true, want.Search
	}
	return o
}

// NextOwned is the record to keep after ops were applied: what the agent
// added, minus what it removed (and no address once DHCP is back on:
// Windows removed them all).
func NextOwned(prev Owned, o Ops) Owned {
	if o.EnableDHCP {
		prev.Addresses = nil
	}
	// A route is recorded by key, with the metric the agent asked for.
	var routes []Route
	for _, r := range prev.Routes {
		if findRoute(o.DelRoutes, r) < 0 && findRoute(o.SetRoutes, r) < 0 {
			routes = append(routes, r)
		}
	}
	for _, r := range slices.Concat(o.AddRoutes, o.SetRoutes) {
		if findRoute(routes, r) < 0 {
			routes = append(routes, r)
		}
	}
	return Owned{
		Addresses: nextList(prev.Addresses, o.DelAddrs, o.AddAddrs),
		Routes:    routes,
	}
}

// nextList is prev without del, then add's entries not yet in it, in order.
func nextList[T comparable](prev, del, add []T) []T {
	var n []T
	for _, x := range prev {
		if !slices.Contains(del, x) {
			n = append(n, x)
		}
	}
	for _, x := range add {
		if !slices.Contains(n, x) {
			n = append(n, x)
		}
	}
	return n
}

// SameDNS reports whether two name server lists agree family by family:
// Windows keeps the IPv4 and the IPv6 servers in two lists
// (SetInterfaceDnsSettings with and without DNS_SETTING_IPV6, netsh's ipv4
// and ipv6 contexts), so only the order within a family is kept.
func SameDNS(a, b []netip.Addr) bool {
	v4a, v6a := SplitDNS(a)
	v4b, v6b := SplitDNS(b)
	return slices.Equal(v4a, v4b) && slices.Equal(v6a, v6b)
}

// SplitDNS splits name servers into the IPv4 and the IPv6 ones, in order.
func SplitDNS(as []netip.Addr) (v4, v6 []netip.Addr) {
	for _, a := range as {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	return v4, v6
}

func equalFold(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// DNSList renders name servers or search domains as the comma-separated
// list SetInterfaceDnsSettings takes.
func DNSList[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// ParseDNSList reads such a list back (commas or spaces as separators).
func ParseDNSList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
