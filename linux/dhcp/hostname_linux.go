package dhcp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prewarm/prewarm/agent"
	"golang.org/x/sys/unix"
)

var _ agent.HostnameSender = (*Renewer)(nil)

// hostName is the name a renewal sends: the host name of the UTS namespace
// the renewer runs in (what the agent's hostname step set with
// sethostname), read at each renewal, so the renewal after a claim carries
// the claim's name. Short is its first label (option 12, host name); FQDN
// is the whole name when it has a domain (option 81, client FQDN), else "".
type hostName struct{ Short, FQDN string }

// currentHostName reads the kernel's host name. A machine with none set
// ("", "(none)", "localhost") sends none.
func currentHostName() hostName {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return hostName{}
	}
	return parseHostName(unix.ByteSliceToString(u.Nodename[:]))
}

// A name that is not a DNS name (a label empty, over 63 characters, or
// with a character other than a-z, 0-9, '-' and '_'; over 253 in all)
// sends none either: the agent's hostname step sets only valid names,
// but anything root runs can set the kernel's, and the name goes into
// dhclient's config (a quote or newline there would add statements, such
// as a "script" dhclient runs as root), udhcpc's command line and the
// options, where option 81 carries labels, which a bad label would
// change.
func parseHostName(n string) hostName {
	n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
	short, _, _ := strings.Cut(n, ".")
	switch short {
	case "", "(none)", "localhost":
		return hostName{}
	}
	if !dnsName(n) {
		return hostName{}
	}
	h := hostName{Short: short}
	if short != n {
		h.FQDN = n
	}
	return h
}

// dnsName reports whether n is dot-separated labels of 1-63 characters
// of [a-z0-9_-], at most 253 characters.
func dnsName(n string) bool {
	if len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Name is the full name: the FQDN, else the short name.
func (h hostName) Name() string {
	if h.FQDN != "" {
		return h.FQDN
	}
	return h.Short
}

// modifiers are the built-in client's options for h: 12 with the short
// name, and 81 (RFC 4702) with the FQDN in canonical wire format (flag E)
// asking the server to update the A record (flag S).
func (h hostName) modifiers() []dhcpv4.Modifier {
	if h.Short == "" {
		return nil
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptHostName(h.Short))}
	if h.FQDN != "" {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionFQDN, fqdnOption(h.FQDN)))
	}
	return mods
}

// fqdnOption is option 81's value: flags (E|S), RCODE1 and RCODE2 (0, as
// RFC 4702 asks of clients), then the name as DNS labels ending with the
// root label.
func fqdnOption(name string) []byte {
	b := []byte{0x05, 0, 0}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// dhclientConfig returns the config file a restarted dhclient should read
// (its -cf, else Debian's /etc/dhcp/dhclient.conf) so that it sends the
// host name: that file if it has a "send host-name" statement (Debian's
// default sends gethostname(), which a restart reads anew), else a copy in
// stateDir with "send host-name = gethostname();" added (and, for a name
// with a domain, option 81 with it). "" (and no error) keeps the command
// line as it is: no state directory to write the copy to.
func dhclientConfig(argv []string, stateDir, iface string, h hostName) (string, error) {
	conf := "/etc/dhcp/dhclient.conf"
	if i := slices.Index(argv, "-cf"); i >= 0 && i+1 < len(argv) {
		conf = argv[i+1]
	}
	old, err := os.ReadFile(conf)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("read dhclient config %s: %w", conf, err)
	}
	// A copy made before: start again from the original's part, so the
	// name added (option 81's FQDN) is the current one.
	if i := bytes.Index(old, []byte(dhclientMarker)); i >= 0 {
		old = old[:i]
	} else if sendsHostName(old) || h.Short == "" {
		return conf, nil
	}
	if stateDir == "" {
		return "", nil
	}
	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString(dhclientMarker + "\nsend host-name = gethostname();\n")
	if h.FQDN != "" {
		fmt.Fprintf(&b, "send fqdn.fqdn \"%s.\";\nsend fqdn.encoded on;\nsend fqdn.server-update on;\n", h.FQDN)
	}
	p := filepath.Join(stateDir, "dhclient."+iface+".conf")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write dhclient config %s: %w", p, err)
	}
	return p, nil
}

// dhclientMarker starts what dhclientConfig adds to a copy.
const dhclientMarker = "# added by prewarm-agent: the host name reaches the DHCP server"

// sendsHostName reports whether a dhclient config has an uncommented
// "send host-name" statement.
func sendsHostName(conf []byte) bool {
	for _, l := range strings.Split(string(conf), "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "send" && strings.TrimSuffix(f[1], ";") == "host-name" {
			return true
		}
	}
	return false
}

// dhcpcdSendsHostName reports whether a dhcpcd's config (its -f, else
// /etc/dhcpcd.conf) has the "hostname" option: a dhcpcd sends the current
// host name only then, and its rebind (SIGHUP, what "dhcpcd -n" sends)
// re-reads the config and the host name, but takes no options from the
// command that asked for it. False with the file's path when it has none.
// A daemon that rewrote its command line into a title ("dhcpcd: eth0
// [ip4]") no longer shows its -f: true, with "" for the unknown config.
func dhcpcdSendsHostName(argv []string) (bool, string) {
	conf := "/etc/dhcpcd.conf"
	if len(argv) > 0 && strings.HasPrefix(argv[0], "dhcpcd:") {
		return true, ""
	}
	w := words(argv)
	for i, x := range w {
		if (x == "-f" || x == "--config") && i+1 < len(w) {
			conf = w[i+1]
		}
		if x == "-h" || x == "--hostname" {
			return true, conf
		}
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		return false, conf
	}
	for _, l := range strings.Split(string(b), "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) >= 1 && f[0] == "hostname" {
			return true, conf
		}
	}
	return false, conf
}

// udhcpcHostName is the host name a udhcpc's command line sends (-x
// hostname:NAME, -H/-h/--hostname NAME, -F/--fqdn NAME), "" for none.
func udhcpcHostName(argv []string) string {
	name := ""
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		next := func() string {
			if i+1 < len(argv) {
				i++
				return argv[i]
			}
			return ""
		}
		switch {
		case a == "-x":
			if v, ok := strings.CutPrefix(next(), "hostname:"); ok {
				name = v
			}
		case strings.HasPrefix(a, "-xhostname:"):
			name = strings.TrimPrefix(a, "-xhostname:")
		case a == "-H", a == "-h", a == "--hostname", a == "-F", a == "--fqdn":
			name = next()
		case strings.HasPrefix(a, "--hostname="):
			name = strings.TrimPrefix(a, "--hostname=")
		case strings.HasPrefix(a, "--fqdn="):
			name = strings.TrimPrefix(a, "--fqdn=")
		}
	}
	return strings.ToLower(name)
}

// udhcpcArgv is a udhcpc command line sending h instead of what argv
// sent: every host name and FQDN option dropped, then -x hostname:SHORT
// and, for a name with a domain, -F FQDN (option 81). The program words
// (busybox udhcpc, or udhcpc) are kept.
func udhcpcArgv(argv []string, h hostName) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-x" && i+1 < len(argv) && strings.HasPrefix(argv[i+1], "hostname:"):
			i++
		case a == "-H", a == "-h", a == "--hostname", a == "-F", a == "--fqdn":
			i++
		case strings.HasPrefix(a, "-xhostname:"), strings.HasPrefix(a, "--hostname="), strings.HasPrefix(a, "--fqdn="):
		default:
			out = append(out, a)
		}
	}
	if h.Short != "" {
		out = append(out, "-x", "hostname:"+h.Short)
	}
	if h.FQDN != "" {
		out = append(out, "-F", h.FQDN)
	}
	return out
}

// PublishesHostname implements agent.HostnamePublisher: every renewal
// sends the current host name, so the agent renews after the hostname
// step changed it.
func (r *Renewer) PublishesHostname() bool { return true }

// SendsHostname implements agent.HostnameSender: false when the client
// that owns iface would send the old name on a renewal (a dhcpcd whose
// config has no "hostname", a udhcpc in the foreground whose command line
// names another), so that the agent makes no renewal for the name there.
func (r *Renewer) SendsHostname(ctx context.Context, iface string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, err := net.InterfaceByName(iface)
	if err != nil {
		return true // the renewal reports what is wrong
	}
	return clientSendsHostName(r.owner(iface, l.Index), currentHostName())
}

// clientSendsHostName reports whether a renewal by ow sends host.
func clientSendsHostName(ow owner, host hostName) bool {
	switch ow.Client {
	case Dhcpcd:
		ok, _ := dhcpcdSendsHostName(ow.Argv)
		return ok
	case Udhcpc:
		return ow.PID == 0 || !udhcpcForeground(ow.Argv) || udhcpcHostName(ow.Argv) == host.Name()
	}
	return true
}
