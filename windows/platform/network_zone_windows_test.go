package platform

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/windows/internal/plan"
)

// TestUnzonedDNSList: the name server list handed to SetInterfaceDnsSettings
// and netsh carries no zone, so a zone's bytes cannot add a server to it.
func TestUnzonedDNSList(t *testing.T) {
	in := []netip.Addr{netip.MustParseAddr("fe80::1%x,6.6.6.6"), netip.MustParseAddr("fe80::2%eth0 7.7.7.7"), netip.MustParseAddr("10.1.0.2")}
	got := plan.DNSList(unzoned(in))
	if got != "fe80::1,fe80::2,10.1.0.2" || strings.ContainsAny(got, "% ") {
		t.Errorf("DNS list %q, want fe80::1,fe80::2,10.1.0.2", got)
	}
	if in[0].Zone() == "" {
		t.Error("unzoned changed its argument")
	}
}
