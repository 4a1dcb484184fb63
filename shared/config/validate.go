package config

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
	// The zone database is embedded so that every party (IMDS, Linux and
	// Windows agents) agrees on which time zone names exist.
	_ "time/tzdata"

	"golang.org/x/crypto/ssh"
)

// MTU bounds: 68 is the IPv4 minimum (RFC 791), 65535 the largest a link
// can announce.
const (
	MinMTU = 68
	MaxMTU = 65535
)

// Route metric bounds: Linux's 32-bit route priority (0 is absent: the OS
// default). Windows takes 1..9999 (route add, New-NetRoute, netsh): its
// agent refuses a larger metric before any step (windows/internal/plan's
// CheckRouteMetrics), naming the field, as it does its other limits.
const (
	MinRouteMetric = 1
	MaxRouteMetric = math.MaxUint32
)

// MaxPasswordBytes bounds a plaintext password.
const MaxPasswordBytes = 256

// reservedUsers are well-known system account names of Linux and Windows
// that a document may never manage.
var reservedUsers = map[string]bool{
	"root": true, "daemon": true, "bin": true, "sys": true, "sync": true,
	"games": true, "man": true, "lp": true, "mail": true, "news": true,
	"uucp": true, "proxy": true, "www-data": true, "backup": true,
	"list": true, "irc": true, "gnats": true, "nobody": true, "_apt": true,
	"messagebus": true, "sshd": true, "polkitd": true, "halt": true,
	"shutdown": true, "operator": true, "systemd-network": true,
	"systemd-resolve": true, "systemd-timesync": true,
	"systemd-coredump": true, "administrator": true, "guest": true,
	"defaultaccount": true, "wdagutilityaccount": true,
}

// Validate checks d against the rules of PROTOCOL.md section 1 and returns a
// *ValidationError naming every offending field, or nil. Decode already
// calls it; use it for documents built in code.
func (d *Document) Validate() error {
	w := &walker{}
	d.check(w)
	if len(w.errs) > 0 {
		return &ValidationError{Fields: w.errs}
	}
	return nil
}

func (d *Document) check(w *walker) {
	if d.Hostname != "" {
		if reason := hostnameRule(d.Hostname); reason != "" {
			w.fail("hostname", "%s", reason)
		}
	}
	if d.Timezone != "" {
		if reason := timezoneRule(d.Timezone); reason != "" {
			w.fail("timezone", "%s", reason)
		}
	}
	checkReboot(w, d.Reboot)
	if d.UserData != nil && len(*d.UserData) > MaxUserDataBytes {
		w.fail("userData", "must be at most %d bytes (is %d)", MaxUserDataBytes, len(*d.UserData))
	}
	seen := map[string]int{}
	for i, u := range d.Users {
		p := index("users", i)
		if first, dup := seen[u.Name]; dup && u.Name != "" {
			w.fail(join(p, "name"), "duplicate of users[%d].name", first)
		} else {
			seen[u.Name] = i
		}
		u.check(w, p)
	}
	if d.Network != nil {
		d.Network.check(w, "network")
	}
	if d.SSHHostKeys != nil {
		d.SSHHostKeys.check(w, "sshHostKeys")
	}
}

// hostnameRule returns why name is not an RFC 1123 host name, or "".
func hostnameRule(name string) string {
	const rule = "must be an RFC 1123 host name: dot-separated labels of 1-63 characters of [a-z0-9-], not starting or ending with '-', at most 253 characters"
	if len(name) > 253 {
		return rule
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return rule
		}
	}
	if numericName(labels) {
		return "must be a host name, not an IP address literal: RFC 1123 section 2.1 allows digits in labels but not an all-numeric last label (10.0.0.1, 127.1, 0x7f000001 and web.123 are refused)"
	}
	return ""
}

// numericName reports whether labels could be read as an IPv4 address
// (every form inet_aton(3) accepts: 1.2.3.4, 127.1, 0x7f000001) or end in an
// all-numeric label, which RFC 1123 section 2.1 and RFC 3696 section 2 rule
// out for a host name and Windows refuses for a computer name.
func numericName(labels []string) bool {
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	if len(labels) > 4 {
		return false
	}
	for _, l := range labels {
		hex, ok := strings.CutPrefix(l, "0x")
		if !ok || strings.Trim(hex, "0123456789abcdef") != "" {
			if strings.Trim(l, "0123456789") != "" {
				return false
			}
		}
	}
	return true
}

// zoneinfoDirs are the system zone directories time.LoadLocation reads
// before its embedded copy (Go's platformZoneSources on Unix).
var zoneinfoDirs = []string{"/usr/share/zoneinfo/", "/usr/share/lib/zoneinfo/", "/usr/lib/locale/TZ/"}

// ValidHostname reports whether name is a host name a document may set: an
// RFC 1123 name of lower-case labels that is not an IP address literal.
func ValidHostname(name string) bool { return hostnameRule(name) == "" }

// ValidSearchDomain reports whether s is a DNS search domain by the
// hostname label rules, in any case.
func ValidSearchDomain(s string) bool { return hostnameRule(strings.ToLower(s)) == "" }

// ValidUserName reports whether name matches the pattern of users[].name
// and users[].groups[] (^[a-z_][a-z0-9_-]{0,31}$). Reserved system names
// match it: Validate refuses those for users[].name on top.
func ValidUserName(name string) bool { return validUserName(name) }

// ValidShell reports whether shell is an absolute path without spaces,
// colons or control characters, at most 255 characters.
func ValidShell(shell string) bool { return validShellSyntax(shell) }

// ValidPasswordHash reports whether h is a crypt(3) string of a scheme a
// document may carry: $6$ (SHA-512), $5$ (SHA-256) or $y$ (yescrypt).
func ValidPasswordHash(h string) bool { return validCrypt(h) }

// ValidZoneName reports whether zone is a well-formed zone name that can
// name a tzdata zone on some machine: the syntax of zone and link names,
// without "..", and neither Local nor localtime. It does not look the zone
// up: an agent checks that against its own zoneinfo tree, Validate against
// the validating machine's.
func ValidZoneName(zone string) bool { return zoneNameRule(zone) == "" }

func zoneNameRule(zone string) string {
	if zone == "Local" {
		return "must name a tzdata zone; Local is not one"
	}
	if !validZoneSyntax(zone) || strings.Contains(zone, "..") {
		return "must be a tzdata zone or link name like Europe/Berlin or UTC"
	}
	if strings.EqualFold(zone, "localtime") {
		// Debian, Ubuntu and Fedora ship zoneinfo/localtime as a link to
		// /etc/localtime: pointing /etc/localtime at it makes a loop.
		return "must be a tzdata zone or link name; localtime names the machine's own /etc/localtime, not a zone"
	}
	return ""
}

func timezoneRule(zone string) string {
	if reason := zoneNameRule(zone); reason != "" {
		return reason
	}
	for _, dir := range zoneinfoDirs {
		if reason := zoneFileRule(dir, zone); reason != "" {
			return reason
		}
	}
	if _, err := time.LoadLocation(zone); err != nil {
		return "unknown time zone " + quote(zone) + " (not in the tzdata database)"
	}
	return ""
}

// zoneFileRule returns why zone, as a file of the zone directory dir that
// time.LoadLocation would read, is not a zone: a link that resolves outside
// dir or loops. "" when it is fine or dir does not have it.
func zoneFileRule(dir, zone string) string {
	if _, err := os.Lstat(dir + zone); err != nil {
		return ""
	}
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	real, err := filepath.EvalSymlinks(dir + zone)
	if err != nil {
		return "must be a tzdata zone or link name; " + quote(zone) + " is a link that does not resolve (a loop or a dangling link)"
	}
	if rel, err := filepath.Rel(base, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "must be a tzdata zone or link name; " + quote(zone) + " resolves outside the zoneinfo tree"
	}
	return ""
}

func quote(s string) string { return `"` + s + `"` }

func (u User) check(w *walker, p string) {
	if w.has(p) {
		return // not an object; nothing more to say
	}
	switch {
	case u.Name == "" && w.has(join(p, "name")):
		// The decoder already said it is missing or mistyped.
	case !ValidUserName(u.Name):
		w.fail(join(p, "name"), "must match ^[a-z_][a-z0-9_-]{0,31}$")
	case reservedUsers[u.Name]:
		w.fail(join(p, "name"), "%s is a reserved system account name", quote(u.Name))
	}
	for i, g := range u.Groups {
		if !ValidUserName(g) {
			w.fail(index(join(p, "groups"), i), "must match ^[a-z_][a-z0-9_-]{0,31}$")
		}
	}
	switch u.Sudo {
	case "", SudoNone, SudoPassword, SudoNoPasswd:
	default:
		w.fail(join(p, "sudo"), "must be one of none, password, nopasswd")
	}
	if u.Shell != "" && !ValidShell(u.Shell) {
		w.fail(join(p, "shell"), "must be an absolute path without spaces, colons or control characters, at most 255 characters")
	}
	for i, k := range u.SSHAuthorizedKeys {
		if reason := authorizedKeyRule(k); reason != "" {
			w.fail(index(join(p, "sshAuthorizedKeys"), i), "%s", reason)
		}
	}
	if u.PasswordHash != "" && !ValidPasswordHash(u.PasswordHash) {
		w.fail(join(p, "passwordHash"), "must be a crypt(3) string: $6$ (SHA-512), $5$ (SHA-256) or $y$ (yescrypt)")
	}
	if u.Password != "" {
		switch {
		case u.PasswordHash != "":
			w.fail(join(p, "password"), "at most one of password and passwordHash may be set")
		case u.Password == Redacted:
			w.fail(join(p, "password"), "must not be the placeholder REDACTED of an admin read-back; send the real password")
		case len(u.Password) > MaxPasswordBytes:
			w.fail(join(p, "password"), "must be at most %d bytes", MaxPasswordBytes)
		case strings.ContainsAny(u.Password, "\x00\r\n"):
			w.fail(join(p, "password"), "must not contain NUL or line breaks")
		}
	}
}

// has reports whether an error was already recorded for path.
func (w *walker) has(path string) bool {
	for _, e := range w.errs {
		if e.Path == path {
			return true
		}
	}
	return false
}

// authorizedKeyRule returns why line is not one OpenSSH authorized_keys
// line, or "".
func authorizedKeyRule(line string) string {
	if strings.ContainsAny(line, "\r\n\x00") {
		return "must be a single OpenSSH public key line (no line breaks)"
	}
	if len(line) > 16384 {
		return "must be at most 16384 bytes"
	}
	if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(line)); err != nil || len(rest) > 0 {
		return "must be an OpenSSH public key line like \"ssh-ed25519 AAAA... comment\""
	}
	return ""
}

// Reasons of the address fields, given alike for text that does not parse
// (Decode) and for a typed value that breaks the rule (Validate).
const (
	reasonAddress    = "must be an address with a prefix length, e.g. 10.1.0.5/24"
	reasonGateway    = "must be a unicast IPv4 address, e.g. 10.1.0.1"
	reasonRouteTo    = "must be a network in CIDR notation, e.g. 10.2.0.0/16"
	reasonVia        = "must be an IP address, e.g. 10.1.0.254"
	reasonNameserver = "must be an IP address, e.g. 10.1.0.2"
	reasonMetric     = "must be an integer between 1 and 4294967295 (omit the field for the OS default metric)"
)

func (n *Network) check(w *walker, p string) {
	if n.RenewDHCP != nil && *n.RenewDHCP < 0 {
		w.fail(join(p, "renewDhcp"), "must not be negative")
	}
	macs := map[MAC]int{}
	for i, in := range n.Interfaces {
		ip := index(join(p, "interfaces"), i)
		if w.has(ip) {
			continue
		}
		if !in.MAC.IsValid() {
			if !w.has(join(ip, "mac")) {
				w.fail(join(ip, "mac"), "%s", errMAC)
			}
		} else if first, dup := macs[in.MAC]; dup {
			w.fail(join(ip, "mac"), "duplicate of %s.interfaces[%d].mac", p, first)
		} else {
			macs[in.MAC] = i
		}
		in.check(w, ip)
	}
}

// Validate checks one interface entry by the rules Validate applies to it
// inside a document, except that its MAC is unique among the document's
// interfaces. Paths in the *ValidationError are the entry's own (mac,
// routes[0].via). It is the agents' second wall for an entry that never
// went through Decode: the same rules, not a copy of them.
func (in Interface) Validate() error {
	w := &walker{}
	if !in.MAC.IsValid() {
		w.fail("mac", "%s", errMAC)
	}
	in.check(w, "")
	if len(w.errs) > 0 {
		return &ValidationError{Fields: w.errs}
	}
	return nil
}

func (in Interface) check(w *walker, p string) {
	if in.MTU != 0 && (in.MTU < MinMTU || in.MTU > MaxMTU) {
		w.fail(join(p, "mtu"), "must be between %d and %d", MinMTU, MaxMTU)
	}
	if in.DHCP4 {
		// DHCP owns the addresses and routes of such an interface; a
		// static value beside it would be ignored, so refuse it instead.
		const reason = "must not be set when dhcp4 is true: DHCP owns this interface's addresses and routes (set dhcp4 to false, or use another interface)"
		if len(in.Addresses) > 0 {
			w.fail(join(p, "addresses"), reason)
		}
		if in.Gateway4.IsValid() {
			w.fail(join(p, "gateway4"), reason)
		}
		if len(in.Routes) > 0 {
			w.fail(join(p, "routes"), reason)
		}
	}
	for i, a := range in.Addresses {
		ap := index(join(p, "addresses"), i)
		switch {
		case !a.IsValid():
			// netip.Prefix never holds a zone (PrefixFrom drops it).
			w.failOnce(ap, reasonAddress)
		case !unicast(a.Addr()):
			w.fail(ap, "must be a unicast address (not unspecified, loopback or multicast)")
		}
	}
	if g := in.Gateway4; g.IsValid() {
		if g.Zone() != "" {
			w.fail(join(p, "gateway4"), "%s", zoneReason)
		} else if !g.Is4() || !unicast(g) {
			w.fail(join(p, "gateway4"), "%s", reasonGateway)
		}
	}
	for i, r := range in.Routes {
		rp := index(join(p, "routes"), i)
		if w.has(rp) {
			continue
		}
		switch {
		case !r.To.IsValid():
			w.failOnce(join(rp, "to"), reasonRouteTo)
		case r.To.Masked() != r.To:
			w.fail(join(rp, "to"), "must be a network address with its host bits zero (%s)", r.To.Masked())
		}
		switch via := r.Via; {
		case !via.IsValid():
			w.failOnce(join(rp, "via"), reasonVia)
		case via.Zone() != "":
			w.fail(join(rp, "via"), "%s", zoneReason)
		case !unicast(via):
			w.fail(join(rp, "via"), "must be a unicast address")
		case r.To.IsValid() && r.To.Addr().Is4() != via.Is4():
			w.fail(join(rp, "via"), "must be of the same address family as to")
		}
	}
	in.checkRouteKeys(w, p)
	for i, ns := range in.Nameservers {
		np := index(join(p, "nameservers"), i)
		switch {
		case !ns.IsValid():
			w.failOnce(np, reasonNameserver)
		case ns.Zone() != "":
			w.fail(np, "%s", zoneReason)
		case ns.IsUnspecified() || ns.IsMulticast():
			w.fail(np, "%s", reasonNameserver)
		}
	}
	for i, s := range in.SearchDomains {
		if !ValidSearchDomain(s) {
			w.fail(index(join(p, "searchDomains"), i), "must be a DNS domain name, e.g. corp.example")
		}
	}
}

// checkRouteKeys refuses two routes of one interface to the same network
// that agree in via or in metric, gateway4 counting as the route to
// 0.0.0.0/0 through it at the OS default metric. Windows keys a route by
// its interface, network and via, so a second one with the same via but
// another metric cannot exist beside the first; Linux keys it by network
// and metric (the priority), so a second one with the same metric but
// another via would replace the first at every apply. Two routes to one
// network are a primary and a backup: different vias and metrics.
func (in Interface) checkRouteKeys(w *walker, p string) {
	type key struct {
		path   string
		to     netip.Prefix
		via    netip.Addr
		metric uint32
	}
	var seen []key
	if g := in.Gateway4; g.IsValid() && !w.has(join(p, "gateway4")) {
		seen = append(seen, key{join(p, "gateway4"), netip.PrefixFrom(netip.IPv4Unspecified(), 0), g, 0})
	}
	for i, r := range in.Routes {
		rp := index(join(p, "routes"), i)
		if w.has(rp) || w.has(join(rp, "to")) || w.has(join(rp, "via")) || w.has(join(rp, "metric")) {
			continue
		}
		k := key{rp, r.To, r.Via, linuxMetric(r)}
		for _, o := range seen {
			if o.to != k.to {
				continue
			}
			if o.via == k.via {
				w.fail(join(rp, "via"), "must differ from the via of %s, a route to the same network (Windows keeps one route per network and via: give a backup route another via)", o.path)
				break
			}
			if o.metric == k.metric {
				switch {
				case o.path == join(p, "gateway4"):
					w.fail(join(rp, "metric"), "must be set for a default route beside gateway4, which is the default route at the OS default metric (Linux keeps one route per network and metric: give a backup default route a metric)")
				case r.Metric == 0:
					w.fail(join(rp, "metric"), "must be set: %s is a route to the same network at the OS default metric (Linux keeps one route per network and metric: give a backup route a metric)", o.path)
				default:
					w.fail(join(rp, "metric"), "must differ from the metric of %s, a route to the same network (Linux keeps one route per network and metric, and gives an IPv6 route without one 1024: give a backup route another metric)", o.path)
				}
				break
			}
		}
		seen = append(seen, k)
	}
}

// linuxMetric is the priority Linux gives r: its metric, or for an IPv6
// route without one the kernel's 1024 (IPv4's default is 0).
func linuxMetric(r Route) uint32 {
	if r.Metric == 0 && r.To.Addr().Is6() {
		return 1024
	}
	return r.Metric
}

// failOnce records reason for path unless an error is recorded for it
// already (Decode said why the text did not parse).
func (w *walker) failOnce(path, reason string) {
	if !w.has(path) {
		w.fail(path, "%s", reason)
	}
}

// zoneReason is the rule an address with an IPv6 zone (fe80::1%eth0)
// breaks. A zone names an interface of one machine, so it has no place in a
// document, and netip accepts any bytes in it (spaces, ';', line breaks),
// which would travel into configuration files and shell lines.
const zoneReason = "must not carry an IPv6 zone (%...): the interface is implied by the entry; write fe80::1, not fe80::1%eth0"

func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast()
}
