package network

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/internal/nl"
	"github.com/prewarm/prewarm/linux/internal/run"
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
	case c.exists("/etc/systemd/network") && (c.exists(wants+"systemd-networkd.service") || (c.o.Live && dirExists(c.o.RunDir+"/systemd/netif"))):
		return Networkd
	case c.exists("/etc/NetworkManager") && (c.exists(wants+"NetworkManager.service") || c.exists("/etc/systemd/system/dbus-org.freedesktop.nm-dispatcher.service")):
		return NetworkManager
	case c.exists("/etc/network/interfaces"):
		return Ifupdown
	}
	return ""
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// persist writes each static interface's configuration for the target's
// manager. DHCP interfaces keep whatever configuration they have.
func (c *Configurator) persist(ws []*wanted, links map[string]nl.Link) ([]string, error) {
	m := c.manager()
	if m == "" {
		c.log.Info("no network manager configuration found under the root; live changes only")
		return nil, nil
	}
	var acts []string
	for _, w := range ws {
		l, ok := links[w.mac]
		if !ok || w.cfg.DHCP4 {
			continue
		}
		id := strings.ReplaceAll(w.mac, ":", "")
		var p string
		var body []byte
		mode := os.FileMode(0o644)
		switch m {
		case Networkd:
			p, body = "/etc/systemd/network/10-prewarm-"+id+".network", renderNetworkd(w)
		case NetworkManager:
			p, body, mode = "/etc/NetworkManager/system-connections/prewarm-"+id+".nmconnection", renderKeyfile(w, l.Name), 0o600
		case Ifupdown:
			p, body = "/etc/network/interfaces.d/prewarm-"+l.Name, renderIfupdown(w, l.Name)
		}
		full := fsx.Join(c.o.Root, p)
		if err := os.MkdirAll(parent(full), 0o755); err != nil {
			return acts, err
		}
		changed, err := fsx.WriteFile(full, body, fsx.WriteOptions{Mode: mode})
		if err != nil {
			return acts, fmt.Errorf("persist network config of %s: %w", l.Name, err)
		}
		if changed {
			acts = append(acts, "write "+p)
		}
	}
	return acts, nil
}

func parent(p string) string { return p[:strings.LastIndexByte(p, '/')] }

func renderNetworkd(w *wanted) []byte {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n", w.mac)
	if w.cfg.MTU > 0 {
		fmt.Fprintf(&b, "\n[Link]\nMTUBytes=%d\n", w.cfg.MTU)
	}
	b.WriteString("\n[Network]\n")
	for _, a := range w.addrs {
		fmt.Fprintf(&b, "Address=%s\n", a)
	}
	if w.gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", w.gateway)
	}
	for _, d := range w.dns {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if len(w.cfg.SearchDomains) > 0 {
		fmt.Fprintf(&b, "Domains=%s\n", strings.Join(w.cfg.SearchDomains, " "))
	}
	for _, r := range w.routes {
		fmt.Fprintf(&b, "\n[Route]\nDestination=%s\nGateway=%s\n", r.Dst, r.Gateway)
	}
	return []byte(b.String())
}

func renderKeyfile(w *wanted, name string) []byte {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "[connection]\nid=prewarm-%s\ntype=ethernet\ninterface-name=%s\nautoconnect-priority=100\n\n[ethernet]\nmac-address=%s\n", name, name, strings.ToUpper(w.mac))
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
	b.WriteString("\n[ipv4]\nmethod=manual\n")
	for i, a := range v4 {
		fmt.Fprintf(&b, "address%d=%s", i+1, a)
		if i == 0 && w.gateway.IsValid() {
			fmt.Fprintf(&b, ",%s", w.gateway)
		}
		b.WriteString("\n")
	}
	var dns4 []string
	for _, d := range w.dns {
		if d.Is4() {
			dns4 = append(dns4, d.String())
		}
	}
	if len(dns4) > 0 {
		fmt.Fprintf(&b, "dns=%s;\n", strings.Join(dns4, ";"))
	}
	if len(w.cfg.SearchDomains) > 0 {
		fmt.Fprintf(&b, "dns-search=%s;\n", strings.Join(w.cfg.SearchDomains, ";"))
	}
	for i, r := range w.routes {
		if r.Dst.Addr().Is4() {
			fmt.Fprintf(&b, "route%d=%s,%s\n", i+1, r.Dst, r.Gateway)
		}
	}
	if len(v6) > 0 {
		b.WriteString("\n[ipv6]\nmethod=manual\n")
		for i, a := range v6 {
			fmt.Fprintf(&b, "address%d=%s\n", i+1, a)
		}
	} else {
		b.WriteString("\n[ipv6]\nmethod=ignore\n")
	}
	return []byte(b.String())
}

func renderIfupdown(w *wanted, name string) []byte {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "auto %s\n", name)
	first := true
	for _, a := range w.addrs {
		if !a.Addr().Is4() {
			continue
		}
		if first {
			fmt.Fprintf(&b, "iface %s inet static\n\taddress %s\n", name, a)
			if w.gateway.IsValid() {
				fmt.Fprintf(&b, "\tgateway %s\n", w.gateway)
			}
			if w.cfg.MTU > 0 {
				fmt.Fprintf(&b, "\tmtu %d\n", w.cfg.MTU)
			}
			for _, r := range w.routes {
				fmt.Fprintf(&b, "\tup ip route add %s via %s dev %s\n", r.Dst, r.Gateway, name)
			}
			first = false
		} else {
			fmt.Fprintf(&b, "\tup ip addr add %s dev %s\n", a, name)
		}
	}
	if first {
		fmt.Fprintf(&b, "iface %s inet manual\n", name)
	}
	return []byte(b.String())
}

// applyDNS sets the nameservers and search domains: through
// systemd-resolved (resolvectl) on a live system that runs it, else in an
// atomically written /etc/resolv.conf under the root.
func (c *Configurator) applyDNS(ctx context.Context, ws []*wanted, links map[string]nl.Link, st *state) ([]string, error) {
	var servers []string
	var search []string
	any := false
	for _, w := range ws {
		if w.cfg.Nameservers == nil && w.cfg.SearchDomains == nil {
			continue
		}
		any = true
		for _, d := range w.dns {
			if !slices.Contains(servers, d.String()) {
				servers = append(servers, d.String())
			}
		}
		for _, s := range w.cfg.SearchDomains {
			if !slices.Contains(search, s) {
				search = append(search, s)
			}
		}
	}
	if !any {
		return nil, nil
	}
	var acts []string
	if _, err := c.o.Runner.Look("resolvectl"); err == nil && c.o.Live && dirExists(c.o.RunDir+"/systemd/resolve") {
		for _, w := range ws {
			l, ok := links[w.mac]
			if !ok || (w.cfg.Nameservers == nil && w.cfg.SearchDomains == nil) {
				continue
			}
			var ns []string
			for _, d := range w.dns {
				ns = append(ns, d.String())
			}
			key := strings.Join(ns, ",") + "|" + strings.Join(w.cfg.SearchDomains, ",")
			own := st.Interfaces[w.mac]
			if own != nil && own.DNS == key {
				continue
			}
			if _, err := c.o.Runner.Run(ctx, run.Cmd{Name: "resolvectl", Args: append([]string{"dns", l.Name}, ns...)}); err != nil {
				return acts, fmt.Errorf("set DNS of %s: %w", l.Name, err)
			}
			if _, err := c.o.Runner.Run(ctx, run.Cmd{Name: "resolvectl", Args: append([]string{"domain", l.Name}, w.cfg.SearchDomains...)}); err != nil {
				return acts, fmt.Errorf("set search domains of %s: %w", l.Name, err)
			}
			if own != nil {
				own.DNS = key
			}
			acts = append(acts, "set DNS of "+l.Name+" through systemd-resolved")
		}
		return acts, nil
	}
	p := fsx.Join(c.o.Root, "/etc/resolv.conf")
	if err := os.MkdirAll(parent(p), 0o755); err != nil {
		return nil, err
	}
	changed, err := fsx.WriteFile(p, renderResolvConf(servers, search), fsx.WriteOptions{Mode: 0o644})
	if err != nil {
		return nil, fmt.Errorf("set DNS: %w", err)
	}
	if changed {
		acts = append(acts, "write /etc/resolv.conf")
	}
	return acts, nil
}

func renderResolvConf(servers, search []string) []byte {
	var b strings.Builder
	b.WriteString(header)
	for i, s := range servers {
		if i == 3 {
			break // the resolver reads at most three (MAXNS)
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	return []byte(b.String())
}
