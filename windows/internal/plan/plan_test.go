package plan

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/shared/config"
)

func TestComputerName(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"web-01", "web-01", nil},
		{"web-01.corp.example", "web-01", nil},
		{"abcdefghijklmno", "abcdefghijklmno", nil},
		{"abcdefghijklmnop", "", ErrHostnameTooLong},
		{"abcdefghijklmnop.example", "", ErrHostnameTooLong},
		{"short.a-very-long-second-label-is-fine", "short", nil},
		{"12345", "", ErrBadHostname},
		{"-web", "", ErrBadHostname},
		{"web_01", "", ErrBadHostname},
		{"", "", ErrBadHostname},
		{"12345.example", "", ErrBadHostname}, // a valid host name, but no computer name
		{"Web-01", "", ErrBadHostname},        // the document's rule: lower case
		{"10.0.0.1", "", ErrBadHostname},
	}
	for _, tt := range tests {
		got, err := ComputerName(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ComputerName(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestHostname(t *testing.T) {
	tests := []struct {
		active, pending, want string
		set, reboot           bool
	}{
		{"WIN-ABC", "", "web-01", true, true},
		{"WIN-ABC", "WIN-ABC", "web-01", true, true},
		{"WIN-ABC", "web-01", "web-01", false, true}, // set before, not restarted yet
		{"web-01", "web-01", "web-01", false, false},
		{"WEB-01", "", "web-01", false, false},
		{"web-01", "other", "web-01", true, false}, // someone else set a pending name: put ours back
	}
	for _, tt := range tests {
		set, reboot := Hostname(tt.active, tt.pending, tt.want)
		if set != tt.set || reboot != tt.reboot {
			t.Errorf("Hostname(%q, %q, %q) = %v, %v; want %v, %v", tt.active, tt.pending, tt.want, set, reboot, tt.set, tt.reboot)
		}
	}
}

func TestResult(t *testing.T) {
	var r Result
	if got := r.StepResult(); got.Changed || got.RebootRequired || got.Actions != nil {
		t.Errorf("empty result = %+v", got)
	}
	r.Did("set computer name to web-01", true)
	r.Merge(agent.StepResult{Changed: true, Actions: []string{"x"}})
	got := r.StepResult()
	want := agent.StepResult{Changed: true, RebootRequired: true, Actions: []string{"set computer name to web-01", "x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("result = %+v; want %+v", got, want)
	}
	var p Result
	p.Pending()
	if got := p.StepResult(); got.Changed || !got.RebootRequired {
		t.Errorf("pending result = %+v", got)
	}
}

func TestSkipRenewal(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 30, 0, time.UTC)
	old := now.Add(-time.Hour)
	tests := []struct {
		name        string
		before, cur time.Time
		want        bool
	}{
		{"renewed by Windows while waiting", old, now.Add(-time.Second), true},
		{"renewed just before", now.Add(-2 * time.Second), now.Add(-2 * time.Second), true},
		{"stale lease", old, old, false},
		{"no lease info", time.Time{}, time.Time{}, false},
		{"clock skew: lease in the future", now.Add(time.Hour), now.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := SkipRenewal(tt.before, tt.cur, now, 10*time.Second); got != tt.want {
			t.Errorf("%s: SkipRenewal = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestUsers(t *testing.T) {
	if !IsSystemAccount(500) || !IsSystemAccount(503) || IsSystemAccount(1001) {
		t.Error("IsSystemAccount")
	}
	tests := []struct {
		sudo              string
		member, owned     bool
		wantAdd, wantDrop bool
	}{
		{"", false, false, false, false},
		{"none", true, false, false, false}, // an admin the agent did not make stays
		{"none", true, true, false, true},
		{"password", false, false, true, false},
		{"nopasswd", true, true, false, false},
	}
	for _, tt := range tests {
		add, drop := Membership(config.User{Name: "alice", Sudo: tt.sudo}, tt.member, tt.owned)
		if add != tt.wantAdd || drop != tt.wantDrop {
			t.Errorf("Membership(%q, %v, %v) = %v, %v", tt.sudo, tt.member, tt.owned, add, drop)
		}
	}
	g := Groups(config.User{Groups: []string{"sudo", "Remote Desktop Users", "remote desktop users", "wheel", "docker"}})
	if !reflect.DeepEqual(g, []string{"Remote Desktop Users", "docker"}) {
		t.Errorf("Groups = %q", g)
	}
	if err := CheckUser(config.User{Name: "a", PasswordHash: "$6$x$y"}); err == nil {
		t.Error("CheckUser accepted a hash-only user")
	}
	if err := CheckUser(config.User{Name: "a", Password: "pw"}); err != nil {
		t.Error(err)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestParseInterface(t *testing.T) {
	w, err := ParseInterface(config.Interface{
		MAC: config.MustParseMAC("52:54:00:12:34:56"), Addresses: []netip.Prefix{pfx("10.1.0.5/24")}, Gateway4: addr("10.1.0.1"),
		Routes: []config.Route{{To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254")}}, MTU: 1500,
		Nameservers: []netip.Addr{addr("10.1.0.2")}, SearchDomains: []string{"corp.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Want{MAC: "52:54:00:12:34:56", Addresses: []netip.Prefix{pfx("10.1.0.5/24")},
		Routes: []Route{{To: DefaultRoute, Via: addr("10.1.0.1")}, {To: pfx("10.2.0.0/16"), Via: addr("10.1.0.254")}},
		MTU:    1500, DNS: []netip.Addr{addr("10.1.0.2")}, Search: []string{"corp.example"},
		HasGateway: true, HasRoutes: true}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("ParseInterface = %+v; want %+v", w, want)
	}
	// Typed values that break the document's rules (checked again, by the
	// same function) and values Windows cannot take.
	_, err = ParseInterface(config.Interface{Addresses: []netip.Prefix{{}, pfx("2001:db8::1/64")}, Gateway4: addr("2001:db8::1"),
		Routes: []config.Route{{To: pfx("2001:db8:1::/48"), Via: addr("2001:db8::fe")}}, MTU: 100})
	if err == nil {
		t.Fatal("bad interface parsed")
	}
	for _, s := range []string{"mac: must be a 48-bit MAC", "addresses[0]: must be an address with a prefix length", "addresses[1] 2001:db8::1/64: want an IPv4 address",
		"gateway4: must be a unicast IPv4 address", "routes[0] 2001:db8:1::/48 via 2001:db8::fe: want an IPv4 route", "mtu 100"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

func TestDiff(t *testing.T) {
	want := Want{Addresses: []netip.Prefix{pfx("10.1.0.5/24")},
		Routes: []Route{{To: DefaultRoute, Via: addr("10.1.0.1")}}, HasGateway: true, MTU: 1500,
		DNS: []netip.Addr{addr("10.1.0.2")}, Search: []string{"corp.example"}}
	fresh := Have{DHCP: true, MTU: 1500}
	o := Diff(want, false, fresh, Owned{})
	if !o.DisableDHCP || len(o.AddAddrs) != 1 || len(o.AddRoutes) != 1 || !o.SetDNS || !o.SetSearch || o.SetMTU != 0 {
		t.Errorf("fresh diff = %+v", o)
	}
	if len(o.Actions("Ethernet")) != 5 {
		t.Errorf("actions = %q", o.Actions("Ethernet"))
	}
	if o.Static != pfx("10.1.0.5/24") {
		t.Errorf("static address for the DHCP switch = %v", o.Static)
	}
	// DHCP still on although the static address is there already (set by
	// hand): DHCP goes off, nothing is added.
	if o := Diff(want, false, Have{DHCP: true, Addresses: want.Addresses, Routes: want.Routes, MTU: 1500}, Owned{}); !o.DisableDHCP || len(o.AddAddrs) != 0 || o.Static != pfx("10.1.0.5/24") {
		t.Errorf("DHCP-on-with-address diff = %+v", o)
	}
	owned := NextOwned(Owned{}, o)
	applied := Have{Addresses: want.Addresses, Routes: want.Routes, MTU: 1500, DNS: want.DNS, Search: []string{"CORP.example"}}
	if o := Diff(want, false, applied, owned); !o.Empty() {
		t.Errorf("second diff not empty: %+v", o)
	}
	// The document moves the address: the old one, ours, goes; a foreign
	// address stays.
	want2 := want
	want2.Addresses = []netip.Prefix{pfx("10.1.0.6/24")}
	have := applied
	have.Addresses = []netip.Prefix{pfx("10.1.0.5/24"), pfx("192.168.9.9/24")}
	o = Diff(want2, false, have, owned)
	if !reflect.DeepEqual(o.DelAddrs, []netip.Prefix{pfx("10.1.0.5/24")}) || !reflect.DeepEqual(o.AddAddrs, want2.Addresses) {
		t.Errorf("move diff = %+v", o)
	}
	if n := NextOwned(owned, o); !reflect.DeepEqual(n.Addresses, want2.Addresses) {
		t.Errorf("owned after move = %+v", n)
	}
	// dhcp4: true leaves addresses to DHCP.
	if o := Diff(want, true, fresh, Owned{}); o.DisableDHCP || o.EnableDHCP || len(o.AddAddrs) != 0 {
		t.Errorf("dhcp4 diff = %+v", o)
	}
	// Static, then dhcp4: DHCP back on, and the name servers with it when
	// the document names none; the routes the agent added go, as on Linux
	// (DHCP owns the interface's routes), a foreign one stays; the record
	// keeps no address and no route.
	foreign := Route{To: pfx("192.168.0.0/16"), Via: addr("10.1.0.9")}
	withForeign := applied
	withForeign.Routes = append(slices.Clone(applied.Routes), foreign)
	back := Diff(Want{}, true, withForeign, owned)
	if !back.EnableDHCP || !back.ResetDNS || !reflect.DeepEqual(back.DelRoutes, want.Routes) || len(back.DelAddrs) != 0 || len(back.Actions("Ethernet")) != 3 {
		t.Errorf("static to DHCP diff = %+v", back)
	}
	if n := NextOwned(owned, back); n.Addresses != nil || n.Routes != nil {
		t.Errorf("owned after DHCP back = %+v", n)
	}
	// DHCP already on (an apply stopped after the switch), the agent's
	// address and route still there: both go; nothing else changes.
	onAgain := withForeign
	onAgain.DHCP = true
	if o := Diff(Want{}, true, onAgain, owned); o.EnableDHCP || o.ResetDNS || !reflect.DeepEqual(o.DelRoutes, want.Routes) || !reflect.DeepEqual(o.DelAddrs, want.Addresses) {
		t.Errorf("dhcp4 with the agent's leftovers diff = %+v", o)
	}
	if o := Diff(Want{}, true, Have{DHCP: true, Routes: []Route{foreign}}, Owned{}); !o.Empty() {
		t.Errorf("dhcp4 on a DHCP interface without leftovers diff = %+v", o)
	}
	if o := Diff(Want{DNS: want.DNS}, true, applied, owned); !o.EnableDHCP || o.ResetDNS {
		t.Errorf("static to DHCP with the document's name servers = %+v", o)
	}
	// The first address is the primary one; the others are added
	// SkipAsSource (the platform sets the flag for all but Primary).
	two := Want{Addresses: []netip.Prefix{pfx("10.1.0.5/24"), pfx("10.1.0.6/24")}}
	if o := Diff(two, false, Have{}, Owned{}); o.Primary != pfx("10.1.0.5/24") || len(o.AddAddrs) != 2 {
		t.Errorf("two addresses diff = %+v", o)
	}
	// Absent sections leave the machine alone.
	if o := Diff(Want{}, false, applied, owned); !o.Empty() {
		t.Errorf("empty want diff = %+v", o)
	}
	// A new gateway replaces the default route the agent added.
	want3 := want
	want3.Routes = []Route{{To: DefaultRoute, Via: addr("10.1.0.254")}}
	if o := Diff(want3, false, applied, owned); len(o.DelRoutes) != 1 || len(o.AddRoutes) != 1 {
		t.Errorf("gateway change diff = %+v", o)
	}
	if o := Diff(Want{MTU: 9000}, false, applied, owned); o.SetMTU != 9000 {
		t.Errorf("mtu diff = %+v", o)
	}
}

// TestSameDNS: IPv4 and IPv6 name servers are two lists on Windows; the
// order within each counts, not how the two interleave.
func TestSameDNS(t *testing.T) {
	a4, b4, a6 := addr("10.0.0.1"), addr("10.0.0.2"), addr("2001:db8::1")
	tests := []struct {
		a, b []netip.Addr
		want bool
	}{
		{[]netip.Addr{a4, a6, b4}, []netip.Addr{a6, a4, b4}, true},
		{[]netip.Addr{a4, b4}, []netip.Addr{b4, a4}, false},
		{[]netip.Addr{a4, a6}, []netip.Addr{a4}, false},
		{nil, []netip.Addr{}, true},
		{[]netip.Addr{netip.AddrFrom16(a4.As16())}, []netip.Addr{a4}, true}, // v4-mapped
	}
	for _, tt := range tests {
		if got := SameDNS(tt.a, tt.b); got != tt.want {
			t.Errorf("SameDNS(%v, %v) = %v", tt.a, tt.b, got)
		}
	}
	v4, v6 := SplitDNS([]netip.Addr{a6, a4, b4})
	if !reflect.DeepEqual(v4, []netip.Addr{a4, b4}) || !reflect.DeepEqual(v6, []netip.Addr{a6}) {
		t.Errorf("SplitDNS = %v, %v", v4, v6)
	}
}

func TestDNSList(t *testing.T) {
	if got := DNSList([]netip.Addr{addr("10.0.0.1"), addr("10.0.0.2")}); got != "10.0.0.1,10.0.0.2" {
		t.Errorf("DNSList = %q", got)
	}
	if got := ParseDNSList("10.0.0.1, 10.0.0.2 "); !reflect.DeepEqual(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("ParseDNSList = %q", got)
	}
}

// TestParseInterfaceRefusesZonesAndListSyntax: a nameserver with an IPv6
// zone, or a search domain carrying the separators of the comma-separated
// lists handed to SetInterfaceDnsSettings and netsh, is refused, naming the
// field, even in a document that was never validated.
func TestParseInterfaceRefusesZonesAndListSyntax(t *testing.T) {
	_, err := ParseInterface(config.Interface{MAC: config.MustParseMAC("52:54:00:12:34:56"),
		Nameservers:   []netip.Addr{addr("10.1.0.2"), addr("fe80::1%x,6.6.6.6"), addr("fe80::2%eth0")},
		SearchDomains: []string{"corp.example", "a.example,evil.example", "b c", "x\ny", ""}})
	if err == nil {
		t.Fatal("hostile interface parsed")
	}
	for _, s := range []string{"nameservers[1]", "nameservers[2]", "searchDomains[1]", "searchDomains[2]", "searchDomains[3]", "searchDomains[4]", "zone"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	for _, s := range []string{"nameservers[0]", "searchDomains[0]"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q names the good %s", err, s)
		}
	}
}
