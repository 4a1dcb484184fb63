package network

import (
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// TestRenderNetworkdSmallMTU: networkd raises the MTU of a link with an
// IPv6 link-local address to 1280 (seen in linux/netmgr's
// TestManagerApply), so a document's smaller MTU turns link-local
// addressing off, unless the document gives the link IPv6 addresses.
func TestRenderNetworkdSmallMTU(t *testing.T) {
	for _, tc := range []struct {
		mtu   int
		addrs []string
		off   bool
	}{
		{1200, []string{"10.1.0.5/24"}, true},
		{1279, nil, true},
		{1280, []string{"10.1.0.5/24"}, false},
		{0, []string{"10.1.0.5/24"}, false},
		{1200, []string{"10.1.0.5/24", "2001:db8::5/64"}, false},
	} {
		in := config.Interface{MAC: config.MustParseMAC("52:54:00:12:34:56"), MTU: tc.mtu}
		for _, a := range tc.addrs {
			in.Addresses = append(in.Addresses, mustPfx(a))
		}
		b, err := renderNetworkd(newWanted(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "\nLinkLocalAddressing=no\n"); got != tc.off {
			t.Errorf("mtu %d, addresses %v: LinkLocalAddressing=no %v, want %v:\n%s", tc.mtu, tc.addrs, got, tc.off, b)
		}
	}
}
