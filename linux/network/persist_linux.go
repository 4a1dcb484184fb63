package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/nl"
)

// Network managers whose configuration is persisted.
const (
	Networkd       = "networkd"
	NetworkManager = "networkmanager"
	Ifupdown       = "ifupdown"
)

const header = "# Written by prewarm-agent from the instance's config document; rewritten on every apply.\n"

func (c *Configurator) exists(p string) bool {
	_, err := os.Stat(fsx.Join(c.o.Root, p))
	return err == nil
}

// manager tells which network manager the target root uses: an enabled
// systemd-networkd, else an enabled NetworkManager, else ifupdown.
func (c *Configurator) manager() string {
	wants := "/etc/systemd/system/multi-user.target.wants/"
	switch {
	case c.exists("/etc/systemd/network") && (c.exists(wants+"systemd-networkd.service") || (c.o.Live && fileExists(c.o.RunDir+"/systemd/netif/state"))):
		return Networkd
	case c.exists("/etc/NetworkManager") && (c.exists(wants+"NetworkManager.service") || c.exists("/etc/systemd/system/dbus-org.freedesktop.nm-dispatcher.service")):
		return NetworkManager
	case c.exists("/etc/network/interfaces"):
		return Ifupdown
	}
	return ""
}

// fileExists: /run/systemd/netif/state is written by a running networkd;
// the directory itself is made by systemd's tmpfiles on every systemd
// machine, NetworkManager's too.
func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// fileChange is the file one static interface gets under the root.
type fileChange struct {
	path string // as seen inside the root
	body []byte
	mode os.FileMode
}

// renderFiles renders, before anything is changed, the file each static
// interface of ws gets for the target's manager, by MAC. links holds the
// live links by MAC; offline (not Live) it is nil and files are matched by
// MAC alone, which ifupdown, naming interfaces, cannot do: a static ifupdown
// interface fails there, naming its MAC. A value the format cannot carry
// (ErrUnsafe) fails too: the apply then changes nothing.
func (c *Configurator) renderFiles(ws []*wanted, links map[string]nl.Link) (map[string]fileChange, error) {
	m := c.manager()
	files := map[string]fileChange{}
	var errs []error
	for _, w := range ws {
		if w.cfg.DHCP4 || m == "" {
			continue
		}
		name, ok := c.linkName(w, links)
		if !ok {
			continue // reported by the live apply
		}
		id := strings.ReplaceAll(w.mac, ":", "")
		f := fileChange{mode: 0o644}
		var err error
		switch m {
		case Networkd:
			f.path = networkdPath(id)
			f.body, err = renderNetworkd(w)
		case NetworkManager:
			f.path, f.mode = keyfilePath(id), 0o600
			f.body, err = renderKeyfile(w, name)
		case Ifupdown:
			if name == "" {
				errs = append(errs, fmt.Errorf("persist network config of %s: ifupdown configures interfaces by name, and the offline root %s does not tell which interface has this MAC (use systemd-networkd or NetworkManager in the image, or provision it live)", w.mac, c.o.Root))
				continue
			}
			f.path = ifupdownPath(name)
			f.body, err = renderIfupdown(w, name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("persist network config of %s: %w", w.mac, err))
			continue
		}
		files[w.mac] = f
	}
	return files, errors.Join(errs...)
}

// linkName is the name of w's link in a live apply (ok false when the
// link is not there), and "" offline, where files are matched by MAC.
func (c *Configurator) linkName(w *wanted, links map[string]nl.Link) (name string, ok bool) {
	if !c.o.Live {
		return "", true
	}
	l, ok := links[w.mac]
	return l.Name, ok
}

// persist writes the rendered file of each static interface, except those
// in skip (whose live apply failed: their file keeps the last generation
// that applied). For a DHCP interface it removes the file it wrote for that
// MAC (a static configuration of before), leaving the interface to whatever
// else the root configures.
func (c *Configurator) persist(ws []*wanted, links map[string]nl.Link, files map[string]fileChange, skip map[string]bool) ([]string, error) {
	var acts []string
	var errs []error
	if c.manager() == "" && slices.ContainsFunc(ws, func(w *wanted) bool { return !w.cfg.DHCP4 }) {
		c.log.Info("no network manager configuration found under the root; live changes only")
	}
	for _, w := range ws {
		if skip[w.mac] {
			continue
		}
		name, ok := c.linkName(w, links)
		if !ok {
			continue // reported by the live apply
		}
		if w.cfg.DHCP4 {
			a, err := c.unpersist(w.mac, name)
			acts = append(acts, a...)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		f, ok := files[w.mac]
		if !ok {
			continue
		}
		full := fsx.Join(c.o.Root, f.path)
		if err := os.MkdirAll(parent(full), 0o755); err != nil {
			errs = append(errs, fmt.Errorf("persist network config of %s: %w", w.mac, err))
			continue
		}
		changed, err := fsx.WriteFile(full, f.body, fsx.WriteOptions{Mode: f.mode})
		if err != nil {
			errs = append(errs, fmt.Errorf("persist network config of %s: %w", w.mac, err))
			continue
		}
		if changed {
			acts = append(acts, "write "+f.path)
		}
	}
	return acts, errors.Join(errs...)
}

// ipv6MinMTU is IPv6's minimum link MTU (RFC 8200).
const ipv6MinMTU = 1280

func networkdPath(id string) string { return "/etc/systemd/network/10-prewarm-" + id + ".network" }
func keyfilePath(id string) string {
	return "/etc/NetworkManager/system-connections/prewarm-" + id + ".nmconnection"
}

const ifupdownDir = "/etc/network/interfaces.d"

func ifupdownPath(name string) string { return ifupdownDir + "/prewarm-" + name }

// macMark names, in an ifupdown file, the MAC it was written for.
func macMark(mac string) string { return "# mac " + mac + "\n" }

// unpersist removes the files the agent wrote for mac under the root, for
// any manager: they start with the agent's header. name is the link's name
// when live ("" offline); ifupdown files are found by it (when they name no
// other MAC) and by the MAC they name.
func (c *Configurator) unpersist(mac, name string) ([]string, error) {
	id := strings.ReplaceAll(mac, ":", "")
	cands := []string{networkdPath(id), keyfilePath(id)}
	if name != "" {
		cands = append(cands, ifupdownPath(name))
	}
	if ents, err := os.ReadDir(fsx.Join(c.o.Root, ifupdownDir)); err == nil {
		for _, e := range ents {
			if p := ifupdownDir + "/" + e.Name(); strings.HasPrefix(e.Name(), "prewarm-") && !slices.Contains(cands, p) {
				cands = append(cands, p)
			}
		}
	}
	var acts []string
	var errs []error
	for _, p := range cands {
		full := fsx.Join(c.o.Root, p)
		b, err := os.ReadFile(full)
		if err != nil || !strings.HasPrefix(string(b), header) {
			continue // absent, or not the agent's
		}
		if strings.HasPrefix(p, ifupdownDir+"/") {
			marked := strings.Contains(string(b), "\n# mac ")
			if marked && !strings.Contains(string(b), "\n"+macMark(mac)) || !marked && p != ifupdownPath(name) {
				continue // another interface's
			}
		}
		if err := os.Remove(full); err != nil {
			errs = append(errs, fmt.Errorf("remove static network config of %s: %w", mac, err))
			continue
		}
		acts = append(acts, "remove "+p)
	}
	return acts, errors.Join(errs...)
}

func parent(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// collectErrs returns check as a function that appends its errors to
// *errs and returns the (escaped) value, so a renderer can check every
// value and report all refusals at once.
func collectErrs(errs *[]error, check func(what, s string) (string, error)) func(what, s string) string {
	return func(what, s string) string {
		s, err := check(what, s)
		if err != nil {
			*errs = append(*errs, err)
		}
		return s
	}
}

// renderNetworkd renders w as a systemd-networkd .network file, refusing
// (ErrUnsafe) any value the format cannot carry.
func renderNetworkd(w *wanted) ([]byte, error) {
	var errs []error
	v := collectErrs(&errs, networkdValue)
	var b strings.Builder
	b.WriteString(header)
	mac, err := macValue("systemd-networkd", w.mac)
	errs = append(errs, err)
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n", mac)
	if w.cfg.MTU > 0 {
		fmt.Fprintf(&b, "\n[Link]\nMTUBytes=%d\n", w.cfg.MTU)
	}
	b.WriteString("\n[Network]\n")
	if w.cfg.MTU > 0 && w.cfg.MTU < ipv6MinMTU && !slices.ContainsFunc(w.addrs, func(a netip.Prefix) bool { return a.Addr().Is6() }) {
		// The kernel keeps no IPv6 on a link under 1280 bytes, and
		// networkd raises the MTU of a link it gives an IPv6 link-local
		// address to 1280: without one it keeps the document's.
		b.WriteString("LinkLocalAddressing=no\n")
	}
	for _, a := range w.addrs {
		fmt.Fprintf(&b, "Address=%s\n", v("address", prefix(a)))
	}
	if w.gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", v("gateway4", addr(w.gateway)))
	}
	for _, d := range w.dns {
		fmt.Fprintf(&b, "DNS=%s\n", v("nameserver", addr(d)))
	}
	if len(w.cfg.SearchDomains) > 0 {
		ds := make([]string, len(w.cfg.SearchDomains))
		for i, d := range w.cfg.SearchDomains {
			ds[i] = v("search domain", d)
		}
		fmt.Fprintf(&b, "Domains=%s\n", strings.Join(ds, " "))
	}
	for i, r := range w.routes {
		fmt.Fprintf(&b, "\n[Route]\nDestination=%s\nGateway=%s\n", v("route to", prefix(r.Dst)), v("route via", addr(r.Gateway)))
		if m := w.metric(i); m != 0 {
			fmt.Fprintf(&b, "Metric=%d\n", m)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render systemd-networkd config of %q: %w", w.mac, err)
	}
	return []byte(b.String()), nil
}

// renderKeyfile renders w as a NetworkManager keyfile for the link name
// ("" offline), escaping every value as GKeyFile does.
func renderKeyfile(w *wanted, name string) ([]byte, error) {
	var errs []error
	v := func(what, s string, list bool) string {
		s, err := keyfileValue(what, s, list)
		if err != nil {
			errs = append(errs, err)
		}
		return s
	}
	mac, err := macValue("NetworkManager keyfile", w.mac)
	errs = append(errs, err)
	var b strings.Builder
	b.WriteString(header)
	if name != "" {
		fmt.Fprintf(&b, "[connection]\nid=%s\ntype=ethernet\ninterface-name=%s\n", v("id", "prewarm-"+name, false), v("interface name", name, false))
	} else { // offline: matched by MAC alone
		fmt.Fprintf(&b, "[connection]\nid=%s\ntype=ethernet\n", v("id", "prewarm-"+strings.ReplaceAll(mac, ":", ""), false))
	}
	fmt.Fprintf(&b, "autoconnect-priority=100\n\n[ethernet]\nmac-address=%s\n", strings.ToUpper(mac))
	if w.cfg.MTU > 0 {
		fmt.Fprintf(&b, "mtu=%d\n", w.cfg.MTU)
	}
	var v4, v6 []netip.Prefix
	for _, a := range w.addrs {
		if a.Addr().Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	// route-metric=0: NetworkManager's routes get the kernel's default
	// priority, as the rtnetlink apply's (the document's routes without a
	// metric), so that both are one route; with NetworkManager's default
	// (100 on ethernet) it replaced the agent's default route with its
	// own, which the next apply added back beside it.
	b.WriteString("\n[ipv4]\nmethod=manual\nroute-metric=0\n")
	for i, a := range v4 {
		fmt.Fprintf(&b, "address%d=%s", i+1, v("address", prefix(a), false))
		if i == 0 && w.gateway.IsValid() {
			fmt.Fprintf(&b, ",%s", v("gateway4", addr(w.gateway), false))
		}
		b.WriteString("\n")
	}
	var dns4 []string
	for _, d := range w.dns {
		if d.Is4() {
			dns4 = append(dns4, v("nameserver", addr(d), true))
		}
	}
	if len(dns4) > 0 {
		fmt.Fprintf(&b, "dns=%s;\n", strings.Join(dns4, ";"))
	}
	if len(w.cfg.SearchDomains) > 0 {
		ds := make([]string, len(w.cfg.SearchDomains))
		for i, d := range w.cfg.SearchDomains {
			ds[i] = v("search domain", d, true)
		}
		fmt.Fprintf(&b, "dns-search=%s;\n", strings.Join(ds, ";"))
	}
	for i, r := range w.routes {
		if r.Dst.Addr().Is4() {
			fmt.Fprintf(&b, "route%d=%s,%s", i+1, v("route to", prefix(r.Dst), false), v("route via", addr(r.Gateway), false))
			if m := w.metric(i); m != 0 {
				fmt.Fprintf(&b, ",%d", m)
			}
			b.WriteString("\n")
		}
	}
	if len(v6) > 0 {
		b.WriteString("\n[ipv6]\nmethod=manual\n")
		for i, a := range v6 {
			fmt.Fprintf(&b, "address%d=%s\n", i+1, v("address", prefix(a), false))
		}
	} else {
		b.WriteString("\n[ipv6]\nmethod=ignore\n")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render NetworkManager keyfile of %q: %w", w.mac, err)
	}
	return []byte(b.String()), nil
}

// renderIfupdown renders w as an interfaces(5) stanza for the link name,
// refusing any value the format cannot carry; the arguments of its "up"
// lines, which ifup runs with /bin/sh, are shell-quoted too.
func renderIfupdown(w *wanted, name string) ([]byte, error) {
	var errs []error
	v := collectErrs(&errs, ifupdownValue)
	sh := func(what, s string) string { return shellQuote(v(what, s)) }
	var b strings.Builder
	b.WriteString(header)
	mac, err := macValue("ifupdown", w.mac)
	errs = append(errs, err)
	b.WriteString(macMark(mac))
	fmt.Fprintf(&b, "auto %s\n", v("interface name", name))
	first := true
	for _, a := range w.addrs {
		if !a.Addr().Is4() {
			continue
		}
		if first {
			fmt.Fprintf(&b, "iface %s inet static\n\taddress %s\n", v("interface name", name), v("address", prefix(a)))
			if w.gateway.IsValid() {
				fmt.Fprintf(&b, "\tgateway %s\n", v("gateway4", addr(w.gateway)))
			}
			if w.cfg.MTU > 0 {
				fmt.Fprintf(&b, "\tmtu %d\n", w.cfg.MTU)
			}
			for i, r := range w.routes {
				fmt.Fprintf(&b, "\tup ip route add %s via %s dev %s", sh("route to", prefix(r.Dst)), sh("route via", addr(r.Gateway)), sh("interface name", name))
				if m := w.metric(i); m != 0 {
					fmt.Fprintf(&b, " metric %d", m)
				}
				b.WriteString("\n")
			}
			first = false
		} else {
			fmt.Fprintf(&b, "\tup ip addr add %s dev %s\n", sh("address", prefix(a)), sh("interface name", name))
		}
	}
	if first {
		fmt.Fprintf(&b, "iface %s inet manual\n", v("interface name", name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render ifupdown config of %q: %w", w.mac, err)
	}
	return []byte(b.String()), nil
}

// dnsPlan is how an apply sets DNS, rendered before anything is changed.
type dnsPlan struct {
	none     bool      // no interface names DNS
	resolved []dnsLink // through systemd-resolved, per link
	conf     []byte    // else /etc/resolv.conf
}

type dnsLink struct {
	mac, name string
	servers   []string
	domains   []string
}

func (d dnsLink) key() string {
	return strings.Join(d.servers, ",") + "|" + strings.Join(d.domains, ",")
}

// planDNS renders the nameservers and search domains: through
// systemd-resolved (resolvectl) on a live system that runs it, else as an
// /etc/resolv.conf under the root. A value the target cannot carry fails
// with ErrUnsafe.
func (c *Configurator) planDNS(ws []*wanted, links map[string]nl.Link) (dnsPlan, error) {
	var servers []netip.Addr
	var search []string
	any := false
	for _, w := range ws {
		if w.cfg.Nameservers == nil && w.cfg.SearchDomains == nil {
			continue
		}
		any = true
		for _, d := range w.dns {
			if d = d.WithZone(""); !slices.Contains(servers, d) {
				servers = append(servers, d)
			}
		}
		for _, s := range w.cfg.SearchDomains {
			if !slices.Contains(search, s) {
				search = append(search, s)
			}
		}
	}
	if !any {
		return dnsPlan{none: true}, nil
	}
	if _, err := c.o.Runner.Look("resolvectl"); err == nil && c.o.Live && dirExists(c.o.RunDir+"/systemd/resolve") {
		var p dnsPlan
		var errs []error
		for _, w := range ws {
			l, ok := links[w.mac]
			if !ok || (w.cfg.Nameservers == nil && w.cfg.SearchDomains == nil) {
				continue
			}
			// resolvectl takes arguments, not a shell line; the same
			// token rule keeps a value from being read as an option or a
			// routing domain (~example).
			d := dnsLink{mac: w.mac, name: l.Name}
			for _, a := range w.dns {
				d.servers = append(d.servers, addr(a))
			}
			for _, s := range w.cfg.SearchDomains {
				v, err := token("resolvectl", "search domain", s)
				errs = append(errs, err)
				d.domains = append(d.domains, v)
			}
			p.resolved = append(p.resolved, d)
		}
		return p, errors.Join(errs...)
	}
	conf, err := renderResolvConf(servers, search)
	return dnsPlan{conf: conf}, err
}

// applyDNS carries out p, recording in st what was sent to resolved.
func (c *Configurator) applyDNS(ctx context.Context, p dnsPlan, st *state) ([]string, error) {
	if p.none {
		return nil, nil
	}
	var acts []string
	if p.conf == nil {
		for _, d := range p.resolved {
			own := st.Interfaces[d.mac]
			if own != nil && own.DNS == d.key() {
				continue
			}
			if _, err := c.o.Runner.Run(ctx, run.Cmd{Name: "resolvectl", Args: append([]string{"dns", d.name}, d.servers...)}); err != nil {
				return acts, fmt.Errorf("set DNS of %s: %w", d.name, err)
			}
			if _, err := c.o.Runner.Run(ctx, run.Cmd{Name: "resolvectl", Args: append([]string{"domain", d.name}, d.domains...)}); err != nil {
				return acts, fmt.Errorf("set search domains of %s: %w", d.name, err)
			}
			if own != nil {
				own.DNS = d.key()
			}
			acts = append(acts, "set DNS of "+d.name+" through systemd-resolved")
		}
		return acts, nil
	}
	path := fsx.Join(c.o.Root, "/etc/resolv.conf")
	if err := os.MkdirAll(parent(path), 0o755); err != nil {
		return nil, fmt.Errorf("set DNS: %w", err)
	}
	changed, err := fsx.WriteFile(path, p.conf, fsx.WriteOptions{Mode: 0o644})
	if err != nil {
		return nil, fmt.Errorf("set DNS: %w", err)
	}
	if changed {
		acts = append(acts, "write /etc/resolv.conf")
	}
	return acts, nil
}

// renderResolvConf renders a resolv.conf, refusing any value the format
// cannot carry.
func renderResolvConf(servers []netip.Addr, search []string) ([]byte, error) {
	var errs []error
	v := collectErrs(&errs, resolvConfValue)
	var b strings.Builder
	b.WriteString(header)
	for i, s := range servers {
		if i == 3 {
			break // the resolver reads at most three (MAXNS)
		}
		fmt.Fprintf(&b, "nameserver %s\n", v("nameserver", addr(s)))
	}
	if len(search) > 0 {
		ds := make([]string, len(search))
		for i, d := range search {
			ds[i] = v("search domain", d)
		}
		fmt.Fprintf(&b, "search %s\n", strings.Join(ds, " "))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render /etc/resolv.conf: %w", err)
	}
	return []byte(b.String()), nil
}
