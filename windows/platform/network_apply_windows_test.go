package platform

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

// recordRunner records the commands it is given and runs none.
type recordRunner struct{ cmds []string }

func (r *recordRunner) Run(_ context.Context, c run.Cmd) ([]byte, error) {
	r.cmds = append(r.cmds, c.Name+" "+strings.Join(c.Args, " "))
	return nil, nil
}

func (r *recordRunner) Look(name string) (string, error) { return name, nil }

// TestApplyEnableDHCP: static → DHCP is netsh's source=dhcp for the
// addresses, and for the name servers of both families when the document
// names none (iphlpapi has no call for either). No iphlpapi write runs,
// so this runs under Wine too.
func TestApplyEnableDHCP(t *testing.T) {
	r := &recordRunner{}
	n := &networkConfigurator{stateDir: tempDir(t), runner: r, log: testLogger(t)}
	a := adapter{Index: 7, Name: "Ethernet", GUID: "{00000000-0000-0000-0000-000000000007}"}
	done, err := n.apply(context.Background(), a, plan.Ops{EnableDHCP: true, ResetDNS: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"netsh interface ipv4 set address name=7 source=dhcp",
		"netsh interface ipv4 set dnsservers name=7 source=dhcp",
		"netsh interface ipv6 set dnsservers name=7 source=dhcp",
	}
	if !slices.Equal(r.cmds, want) {
		t.Errorf("commands:\n%s\nwant\n%s", strings.Join(r.cmds, "\n"), strings.Join(want, "\n"))
	}
	if !done.EnableDHCP || !done.ResetDNS {
		t.Errorf("done = %+v", done)
	}
}

// TestSetDNSFallback: where SetInterfaceDnsSettings is missing (Server
// 2019; Wine), the name servers go through netsh, IPv4 and IPv6 each in
// their own context, and the search list into the interface's SearchList
// registry value. Under Wine the registry write runs in the throwaway
// prefix; on a real Windows the registry part is left to
// windows/verify/network.ps1 (this test changes nothing there).
func TestSetDNSFallback(t *testing.T) {
	if winapi.Available("SetInterfaceDnsSettings") {
		t.Skip("SetInterfaceDnsSettings exists here: the fallback is not taken (network.ps1 checks the API path)")
	}
	if !isWine() {
		t.Skip("would write the registry of a real machine")
	}
	guid := "{11111111-2222-3333-4444-555555555555}"
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, interfaceKey(guid), registry.ALL_ACCESS)
	if err != nil {
		t.Fatalf("create the interface key: %v", err)
	}
	k.Close()
	defer registry.DeleteKey(registry.LOCAL_MACHINE, interfaceKey(guid))
	r := &recordRunner{}
	n := &networkConfigurator{stateDir: tempDir(t), runner: r, log: testLogger(t)}
	a := adapter{Index: 9, Name: "Ethernet 2", GUID: guid}
	// The value this build reads (Wine 8 reports a build before 19041:
	// the Domain suffix, one domain; a later one the SearchList).
	value, search := searchValue(searchStrategy()), []string{"corp.example", "lab.example"}
	if value == "Domain" {
		search = search[:1]
	}
	t.Logf("build %d: %s", windows.RtlGetVersion().BuildNumber, searchStrategy())
	ops := plan.Ops{SetDNS: true, DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("10.0.0.53")},
		SetSearch: true, Search: search}
	if err := n.setDNS(context.Background(), a, ops); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"netsh interface ipv4 set dnsservers name=9 source=static address=none validate=no",
		"netsh interface ipv4 add dnsservers name=9 address=10.0.0.53 index=1 validate=no",
		"netsh interface ipv6 set dnsservers name=9 source=static address=none validate=no",
		"netsh interface ipv6 add dnsservers name=9 address=2001:db8::53 index=1 validate=no",
	}
	if !slices.Equal(r.cmds, want) {
		t.Errorf("commands:\n%s\nwant\n%s", strings.Join(r.cmds, "\n"), strings.Join(want, "\n"))
	}
	if got := registrySearchList(guid, value); !slices.Equal(got, ops.Search) {
		t.Errorf("%s read back %q; want %q", value, got, ops.Search)
	}
	// An empty list removes the value.
	if err := n.setDNS(context.Background(), a, plan.Ops{SetSearch: true, Search: []string{}}); err != nil {
		t.Fatal(err)
	}
	if got := registrySearchList(guid, value); got != nil {
		t.Errorf("%s after clearing: %q", value, got)
	}
	if err := setRegistrySearchList("{no-such-interface}", "SearchList", []string{"x.example"}); err == nil || !strings.Contains(err.Error(), "search domains") {
		t.Errorf("missing interface key: %v", err)
	}
	// Before build 19041 (Server 2019) the domain is the interface's
	// connection-specific suffix, its Domain value: one domain.
	if v := searchValue(plan.SearchSuffix); v != "Domain" {
		t.Fatalf("the suffix strategy writes %s", v)
	}
	if err := setRegistrySearchList(guid, "Domain", []string{"corp.example"}); err != nil {
		t.Fatal(err)
	}
	if got := registrySearchList(guid, "Domain"); !slices.Equal(got, []string{"corp.example"}) {
		t.Errorf("Domain read back %q", got)
	}
	if err := setRegistrySearchList(guid, "Domain", []string{"a.example", "b.example"}); err == nil {
		t.Error("two domains written as one interface's suffix")
	}
}

// TestSkipAsSourceRows: the primary address is a source address, every
// other address the agent adds SkipAsSource.
func TestSkipAsSourceRows(t *testing.T) {
	a := adapter{Index: 7, LUID: 0x1234}
	primary, extra := netip.MustParsePrefix("10.1.0.5/24"), netip.MustParsePrefix("10.1.0.6/24")
	if row := addedRow(a, primary, primary); row.SkipAsSource != 0 || row.InterfaceLuid != 0x1234 {
		t.Errorf("primary row %+v: want a source address", row)
	}
	if row := addedRow(a, extra, primary); row.SkipAsSource != 1 || row.OnLinkPrefixLength != 24 {
		t.Errorf("extra row %+v: want SkipAsSource", row)
	}
	// No primary (the document's addresses are all present already, the
	// diff adds none): every added address is an extra one.
	if row := addedRow(a, extra, netip.Prefix{}); row.SkipAsSource != 1 {
		t.Errorf("row without a primary %+v", row)
	}
}
