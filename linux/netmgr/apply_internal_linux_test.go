package netmgr

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNetworkdConfigured(t *testing.T) {
	const file = "/etc/systemd/network/10-prewarm-x.network"
	type addr struct {
		a      string
		source string
		state  string
	}
	link := func(nf, state string, as ...addr) *networkdLink {
		d := &networkdLink{Name: "eth0", NetworkFile: nf, AdministrativeState: state}
		for _, a := range as {
			p := netip.MustParsePrefix(a.a)
			fam := unix.AF_INET
			if p.Addr().Is6() {
				fam = unix.AF_INET6
			}
			d.Addresses = append(d.Addresses, struct {
				Family            int
				Address           []byte
				PrefixLength      int
				ValidLifetimeUsec uint64
				ConfigSource      string
				ConfigState       string
				ConfigProvider    []byte
			}{Family: fam, Address: p.Addr().AsSlice(), PrefixLength: p.Bits(), ConfigSource: a.source, ConfigState: a.state})
		}
		return d
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24"), netip.MustParsePrefix("fd00::5/64")}
	static4 := addr{"10.0.0.5/24", "static", "configured"}
	static6 := addr{"fd00::5/64", "static", "configured"}
	for _, tc := range []struct {
		name    string
		d       *networkdLink
		ok      bool
		missing string
	}{
		{"configured", link(file, "configured", static4, static6), true, ""},
		{"configuring, addresses there", link(file, "configuring", static4, static6), true, ""},
		{"other file", link("/etc/systemd/network/20-eth0.network", "configured", static4, static6), false, "20-eth0"},
		{"lease left", link(file, "configured", static4, static6, addr{"10.0.0.50/24", "DHCPv4", "configured"}), false, "DHCPv4 lease 10.0.0.50/24"},
		{"foreign, not yet networkd's", link(file, "configuring", addr{"10.0.0.5/24", "foreign", "configured"}, static6), false, "10.0.0.5/24 not configured"},
		{"still configuring the address", link(file, "configuring", addr{"10.0.0.5/24", "static", "configuring"}, static6), false, "10.0.0.5/24"},
		{"IPv6 missing", link(file, "configured", static4), false, "fd00::5/64"},
		{"failed", link(file, "failed", static4, static6), false, "state failed"},
	} {
		ok, missing := tc.d.configured(file, want)
		if ok != tc.ok || !strings.Contains(missing, tc.missing) {
			t.Errorf("%s: configured = %v, %q; want %v, naming %q", tc.name, ok, missing, tc.ok, tc.missing)
		}
	}
}
