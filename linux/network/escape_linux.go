package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrUnsafe marks a value that the target configuration format cannot carry
// as data: it would end a line, start a comment, split a list, or reach a
// shell as syntax. The renderers refuse such a value instead of writing it,
// even when the document was never validated.
var ErrUnsafe = errors.New("value unsafe for the configuration format")

// Every value reaches a configuration file through exactly one rule of its
// format:
//
//   - systemd-networkd (.network, unit-file syntax): refusal. Values run to
//     the end of the line, a trailing backslash joins lines, and settings
//     differ in how they unescape, so only tokenChars pass.
//   - NetworkManager keyfile (GKeyFile): escaping. '\', line breaks, tabs,
//     leading and trailing spaces are escaped as GKeyFile defines, and ';'
//     inside a list item as "\;". Control characters are refused.
//   - ifupdown (interfaces(5)): refusal, as it has no quoting: only
//     tokenChars pass. Values on "up" lines, which ifup hands to /bin/sh,
//     are shell-quoted as well.
//   - resolv.conf (resolver(5)): refusal, as it has no quoting: only
//     tokenChars pass.
//
// Addresses are rendered from netip values with their zone removed, so that
// a zone (fe80::1%x;touch /tmp/pwned) never reaches a file or a command,
// whatever the parser let through.

// isTokenChar reports whether c may appear in a value of a format without
// quoting: letters, digits and . : / _ + @ -.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(".:/_+@-", c) >= 0
}

// token returns v if it is a non-empty run of token characters that does
// not start with '-' (so that it is never read as an option), else an
// ErrUnsafe error naming the format, what v is and v itself.
func token(format, what, v string) (string, error) {
	ok := v != "" && v[0] != '-'
	for i := 0; ok && i < len(v); i++ {
		ok = isTokenChar(v[i])
	}
	if !ok {
		return "", fmt.Errorf("%s: %s %q: %w (only letters, digits and . : / _ + @ - are written, not starting with -)", format, what, v, ErrUnsafe)
	}
	return v, nil
}

// macValue returns mac if it is a canonical 48-bit MAC (52:54:00:12:34:56,
// as parse makes it), else an ErrUnsafe error naming the format.
func macValue(format, mac string) (string, error) {
	if hw, err := net.ParseMAC(mac); err != nil || len(hw) != 6 || hw.String() != mac {
		return "", fmt.Errorf("%s: mac %q: %w (not a canonical 48-bit MAC)", format, mac, ErrUnsafe)
	}
	return mac, nil
}

// addr renders a with no zone.
func addr(a netip.Addr) string { return a.WithZone("").String() }

// prefix renders p; a netip.Prefix never holds a zone.
func prefix(p netip.Prefix) string { return netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).String() }

// networkdValue applies the systemd-networkd rule to one value.
func networkdValue(what, v string) (string, error) { return token("systemd-networkd", what, v) }

// ifupdownValue applies the ifupdown rule to one value.
func ifupdownValue(what, v string) (string, error) { return token("ifupdown", what, v) }

// resolvConfValue applies the resolv.conf rule to one value.
func resolvConfValue(what, v string) (string, error) { return token("resolv.conf", what, v) }

// shellQuote quotes v for /bin/sh: as is when it is made of token characters
// only, else in single quotes (a quote inside as '\”), as Python's
// shlex.quote does.
func shellQuote(v string) string {
	plain := v != ""
	for i := 0; plain && i < len(v); i++ {
		plain = isTokenChar(v[i])
	}
	if plain {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// keyfileValue escapes v as a GKeyFile string value; with list set, ';' is
// escaped too, so that v stays one list item. Control characters other than
// tab and line breaks are refused: GKeyFile has no escape for them.
func keyfileValue(what, v string, list bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == ' ' && (i == 0 || i == len(v)-1):
			b.WriteString(`\s`)
		case c == ';' && list:
			b.WriteString(`\;`)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("NetworkManager keyfile: %s %q: %w (control character)", what, v, ErrUnsafe)
		default:
			b.WriteByte(c)
		}
	}
	if v == "" {
		return "", fmt.Errorf("NetworkManager keyfile: %s: %w (empty)", what, ErrUnsafe)
	}
	return b.String(), nil
}
