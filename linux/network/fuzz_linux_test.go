package network

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// Line shapes of each format the agent writes: a value is one token, so no
// input can add a line, a key, a section or a shell word.
var (
	tok          = `[A-Za-z0-9._:/+@][A-Za-z0-9._:/+@-]*`
	networkdLine = regexp.MustCompile(`^(|# Written by prewarm-agent .*|\[(Match|Link|Network|Route)\]|(MACAddress|MTUBytes|Address|Gateway|DNS|Destination|Metric|LinkLocalAddressing)=` + tok + `|Domains=` + tok + `( ` + tok + `)*)$`)
	ifupdownLine = regexp.MustCompile(`^(# Written by prewarm-agent .*|# mac ` + tok + `|auto ` + tok + `|iface ` + tok + ` inet (static|manual)|\t(address|gateway|mtu) ` + tok + `|\tup ip route add ` + tok + ` via ` + tok + ` dev ` + tok + `( metric [0-9]+)?|\tup ip addr add ` + tok + ` dev ` + tok + `)$`)
	resolvLine   = regexp.MustCompile(`^(# Written by prewarm-agent .*|nameserver ` + tok + `|search ` + tok + `( ` + tok + `)*)$`)
	keyfileLine  = regexp.MustCompile(`^(|# Written by prewarm-agent .*|\[(connection|ethernet|ipv4|ipv6)\]|(id|type|interface-name|autoconnect-priority|mac-address|mtu|method|address[0-9]+|dns|dns-search|route[0-9]+|route-metric)=[^\x00-\x1f\x7f]*)$`)
)

// FuzzRender turns arbitrary field values into the typed values any parser
// could let through (netip keeps any bytes as a zone) and checks both walls:
// the agent's own parse refuses with ErrInvalid or accepts, and every
// renderer, given the entry unchecked (and the MAC text as it came, when it
// is no MAC), either refuses with ErrUnsafe or writes only lines of its
// format's shape.
func FuzzRender(f *testing.F) {
	f.Add("52:54:00:12:34:56", "10.1.0.5/24", "10.1.0.1", "10.2.0.0/16", "10.1.0.254", "10.1.0.2", "corp.example", "eth0", uint32(100))
	// The hostile inputs of issue 13.
	f.Add("52:54:00:12:34:56", "2001:db8::5/64", "", "2001:db8::/64", "fe80::1%x;touch /tmp/pwned", "fe80::1%a\nnameserver 6.6.6.6", "a b", "eth0;reboot", uint32(0))
	f.Add("52-54-00-12-34-56", "fe80::5%eth0/64", "fe80::1%eth0", "fe80::%x/64", "fe80::1", "fe80::53", "x\ny", "eth 0", uint32(4294967295))
	f.Add("52:54:00:12:34:56\n[Network]", "10.1.0.5/24", "10.1.0.1", "10.2.0.0/16", "10.1.0.254", "10.1.0.2", "evil;reboot", "-x", uint32(10000))
	f.Add("52:54:00:12:34:56", "10.1.0.5/24", "10.1.0.1", "10.2.0.0/16", "10.1.0.254", "10.1.0.2", "$(reboot)`id`'\"\\", "e'th\n", uint32(1))
	f.Fuzz(func(t *testing.T, mac, address, gw, to, via, ns, search, name string, metric uint32) {
		in := config.Interface{SearchDomains: []string{search}}
		in.MAC, _ = config.ParseMAC(mac)
		if p, err := netip.ParsePrefix(address); err == nil {
			in.Addresses = []netip.Prefix{p}
		} else if a, err := netip.ParseAddr(address); err == nil {
			in.Addresses = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		}
		in.Gateway4, _ = netip.ParseAddr(gw)
		if a, err := netip.ParseAddr(ns); err == nil {
			in.Nameservers = []netip.Addr{a}
		}
		dst, err1 := netip.ParsePrefix(to)
		gwy, err2 := netip.ParseAddr(via)
		if err1 == nil && err2 == nil {
			in.Routes = []config.Route{{To: dst, Via: gwy, Metric: metric}}
		}
		if _, err := parse(in); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("parse: %v, not ErrInvalid", err)
		}
		w := newWanted(in)
		if !in.MAC.IsValid() {
			w.mac = mac
		}
		check := func(format string, re *regexp.Regexp, b []byte, err error) {
			t.Helper()
			if err != nil {
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("%s: %v, not ErrUnsafe", format, err)
				}
				return
			}
			for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				if !re.MatchString(line) {
					t.Fatalf("%s: line %q is not of the format's shape:\n%s", format, line, b)
				}
			}
		}
		b, err := renderNetworkd(w)
		check("networkd", networkdLine, b, err)
		b, err = renderIfupdown(w, name)
		check("ifupdown", ifupdownLine, b, err)
		b, err = renderResolvConf(w.dns, w.cfg.SearchDomains)
		check("resolv.conf", resolvLine, b, err)
		b, err = renderKeyfile(w, name)
		check("keyfile", keyfileLine, b, err)
	})
}
