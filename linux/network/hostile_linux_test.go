package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/linux/nl"
	"github.com/prewarm/prewarm/shared/config"
)

// hostileStrings are values with the syntax of the formats the agent
// writes: whitespace and line breaks (a new line, key or option), ';' and
// '#' (comments, list separators), quotes, shell expansions, a leading '-'
// (an option), '\' (line continuation), '%' (zones, specifiers) and '~'
// (a resolved routing domain).
var hostileStrings = []string{
	"a b", "x\ny", "x\r\nDNS=6.6.6.6", "tab\there", "evil;reboot", "#c", "q'uote", `d"q`,
	"$(reboot)", "`id`", "-x", `back\`, "%z", "~example", "a\x00b", "a\x1bb", " lead", "",
}

// zonedWanted is an interface whose every address carries a zone with a
// payload, built directly (no parse, no validation) to reach the renderers.
func zonedWanted() *wanted {
	z := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	return &wanted{
		cfg: config.Interface{MAC: config.MustParseMAC("52:54:00:aa:bb:cc"), Addresses: []netip.Prefix{}, Nameservers: []netip.Addr{}},
		mac: "52:54:00:aa:bb:cc",
		addrs: []netip.Prefix{
			netip.MustParsePrefix("10.1.0.5/24"),
			netip.PrefixFrom(z("fe80::5%x;touch /tmp/pwned"), 64),
		},
		gateway: z("fe80::1%eth0;touch /tmp/pwned"),
		routes: []nl.Route{
			{Dst: netip.MustParsePrefix("2001:db8::/64"), Gateway: z("fe80::1%x;touch /tmp/pwned")},
			{Dst: netip.MustParsePrefix("10.2.0.0/16"), Gateway: z("::ffff:10.1.0.254%x\nup reboot")},
		},
		dns: []netip.Addr{z("fe80::53%a\nnameserver 6.6.6.6"), z("10.1.0.2")},
	}
}

// TestRenderersDropZones: whatever the parser let through, no renderer
// writes a zone (or the payload after it).
func TestRenderersDropZones(t *testing.T) {
	w := zonedWanted()
	outs := map[string][]byte{}
	var err error
	if outs["networkd"], err = renderNetworkd(w); err != nil {
		t.Fatalf("networkd: %v", err)
	}
	if outs["keyfile"], err = renderKeyfile(w, "eth0"); err != nil {
		t.Fatalf("keyfile: %v", err)
	}
	if outs["ifupdown"], err = renderIfupdown(w, "eth0"); err != nil {
		t.Fatalf("ifupdown: %v", err)
	}
	if outs["resolv.conf"], err = renderResolvConf(w.dns, nil); err != nil {
		t.Fatalf("resolv.conf: %v", err)
	}
	for f, out := range outs {
		for _, bad := range []string{"%", "touch", "pwned", "reboot", "6.6.6.6"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("%s output carries %q:\n%s", f, bad, out)
			}
		}
	}
	if !strings.Contains(string(outs["networkd"]), "Gateway=fe80::1\n") || !strings.Contains(string(outs["resolv.conf"]), "nameserver fe80::53\n") {
		t.Errorf("zone-less addresses missing:\n%s\n%s", outs["networkd"], outs["resolv.conf"])
	}
}

// TestRenderersRefuseOrEscapeHostileValues feeds hostile search domains,
// link names and MACs to every renderer directly (bypassing parse and
// validation): each one is refused (ErrUnsafe, naming the value's field)
// or, in a NetworkManager keyfile, escaped so that it reads back as exactly
// the value and adds no line.
func TestRenderersRefuseOrEscapeHostileValues(t *testing.T) {
	base := func() *wanted {
		w, err := parse(config.Interface{MAC: config.MustParseMAC("52:54:00:aa:bb:cc"), Addresses: mustPfxs("10.1.0.5/24"), Gateway4: mustAddr("10.1.0.1"),
			Routes: []config.Route{{To: mustPfx("10.2.0.0/16"), Via: mustAddr("10.1.0.254")}}, Nameservers: mustAddrs("10.1.0.2"), SearchDomains: []string{"ok.example"}})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	refused := func(t *testing.T, format, field, v string, out []byte, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: %s %q accepted:\n%s", format, field, v, out)
		} else if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %s %q: err %v, want ErrUnsafe naming %q", format, field, v, err, field)
		}
	}
	for _, v := range hostileStrings {
		w := base()
		w.cfg.SearchDomains = []string{"ok.example", v}
		out, err := renderNetworkd(w)
		refused(t, "networkd", "search domain", v, out, err)
		out, err = renderResolvConf(w.dns, w.cfg.SearchDomains)
		refused(t, "resolv.conf", "search domain", v, out, err)
		out, err = renderKeyfile(w, "eth0")
		keyfileCarries(t, "dns-search", []string{"ok.example", v}, out, err)

		out, err = renderIfupdown(base(), v)
		refused(t, "ifupdown", "interface name", v, out, err)
		if v == "" {
			continue // no name is the offline keyfile, and no MAC suffix is no attack
		}
		out, err = renderKeyfile(base(), v)
		keyfileCarries(t, "interface-name", []string{v}, out, err)

		w = base()
		w.mac = "52:54:00:aa:bb:cc" + v
		out, err = renderNetworkd(w)
		refused(t, "networkd", "mac", w.mac, out, err)
		out, err = renderIfupdown(w, "eth0")
		refused(t, "ifupdown", "mac", w.mac, out, err)
	}

	// The arguments of ifupdown "up" lines reach /bin/sh: a value that
	// passed the token rule is quoted as the shell would need.
	for v, want := range map[string]string{"eth0": "eth0", "a b": `'a b'`, "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(v); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", v, got, want)
		}
	}
}

// keyfileCarries checks that a keyfile either refused a value with a control
// character GKeyFile cannot escape, or holds key with exactly the list (or
// string) want after GKeyFile unescaping, and has only the lines a keyfile
// of ours has.
func keyfileCarries(t *testing.T, key string, want []string, out []byte, err error) {
	t.Helper()
	if err != nil {
		for _, v := range want {
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\r' && r != '\t' }) || v == "" {
				if errors.Is(err, ErrUnsafe) {
					return
				}
			}
		}
		t.Errorf("keyfile: %s %q: %v", key, want, err)
		return
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		switch {
		case line == "" || strings.HasPrefix(line, "# Written by prewarm-agent") || strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") && !ok:
		case !ok || strings.ContainsAny(k, " \t[]#"):
			t.Errorf("keyfile: %s %q: a line that is no key=value: %q\n%s", key, want, line, out)
		case k == key:
			got = gkeyfileList(v, key == "dns-search")
		}
	}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("keyfile: %s reads back as %q, want %q:\n%s", key, got, want, out)
	}
}

// gkeyfileList unescapes a GKeyFile value as g_key_file_get_string(_list)
// does: \s \n \t \r \\ and, in a list, \; inside an item.
func gkeyfileList(v string, list bool) []string {
	var items []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 's':
				b.WriteByte(' ')
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(v[i])
			}
			continue
		}
		if c == ';' && list {
			items = append(items, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	if !list || b.Len() > 0 {
		items = append(items, b.String())
	}
	return items
}

// TestParseRefusesZones: the agent's own parse, the document's rules
// (config.Interface.Validate) applied again, refuses a zone in every
// address field that can hold one, naming the field, and an entry without
// a MAC. (A netip.Prefix cannot hold a zone: addresses[] and routes[].to
// are safe by type, and the decoder refuses "fe80::5%eth0/64" as text.)
func TestParseRefusesZones(t *testing.T) {
	mac := config.MustParseMAC("52:54:00:aa:bb:cc")
	for _, tt := range []struct {
		field string
		in    config.Interface
		zone  bool // refused for its zone
	}{
		{"routes[0].via", config.Interface{MAC: mac, Routes: []config.Route{{To: mustPfx("2001:db8::/64"), Via: mustAddr("fe80::1%x;touch /tmp/pwned")}}}, true},
		{"gateway4", config.Interface{MAC: mac, Gateway4: mustAddr("fe80::1%eth0")}, true},
		{"nameservers[1]", config.Interface{MAC: mac, Nameservers: mustAddrs("10.0.0.2", "fe80::1%a\nnameserver 6.6.6.6")}, true},
		{"routes[1].via", config.Interface{MAC: mac, Routes: []config.Route{{To: mustPfx("2001:db8::/64"), Via: mustAddr("fe80::1")}, {To: mustPfx("10.0.0.0/8"), Via: mustAddr("fe80::1")}}}, false},
		{"mac", config.Interface{}, false},
	} {
		_, err := parse(tt.in)
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field+": ") || tt.zone != strings.Contains(err.Error(), "IPv6 zone") {
			t.Errorf("%s: err %v, want ErrInvalid naming %s (zone rule: %v)", tt.field, err, tt.field, tt.zone)
		}
	}
	w, err := parse(config.Interface{MAC: config.MustParseMAC("52-54-00-AA-BB-CC")})
	if err != nil || w.mac != mac.String() {
		t.Errorf("MAC not canonical: %+v, %v", w, err)
	}
}

// Typed values for test documents.
func mustPfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// mustPfxs and mustAddrs return a non-nil slice, also for no arguments
// ("present and empty").
func mustPfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = mustPfx(s)
	}
	return out
}

func mustAddrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = mustAddr(s)
	}
	return out
}
