package network

import (
	"context"
	"errors"
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
// manager. For a DHCP interface it removes the file it wrote for that MAC
// (a static configuration of before), leaving the interface to whatever
// else the root configures. links holds the live links by MAC; offline (not
// Live) it is nil and files are matched by MAC alone, which ifupdown, naming
// interfaces, cannot do: a static ifupdown interface fails there, naming its
// MAC.
func (c *Configurator) persist(ws []*wanted, links map[string]nl.Link) ([]string, error) {
	m := c.manager()
	var acts []string
	var errs []error
	logged := false
	for _, w := range ws {
		name := ""
		if c.o.Live {
			l, ok := links[w.mac]
			if !ok {
				continue // reported by the live apply
			}
			name = l.Name
		}
		if w.cfg.DHCP4 {
			a, err := c.unpersist(w.mac, name)
			acts = append(acts, a...)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if m == "" {
			if !logged {
				c.log.Info("no network manager configuration found under the root; live changes only")
				logged = true
			}
			continue
		}
		id := strings.ReplaceAll(w.mac, ":", "")
		var p string
		var body []byte
		mode := os.FileMode(0o644)
		switch m {
		case Networkd:
			p, body = networkdPath(id), renderNetworkd(w)
		case NetworkManager:
			p, body, mode = keyfilePath(id), renderKeyfile(w, name), 0o600
		case Ifupdown:
			if name == "" {
				errs = append(errs, fmt.Errorf("persist network config of %s: ifupdown configures interfaces by name, and the offline root %s does not tell which interface has this MAC (use systemd-networkd or NetworkManager in the image, or provision it live)", w.mac, c.o.Root))
				continue
			}
			p, body = ifupdownPath(name), renderIfupdown(w, name)
		}
		full := fsx.Join(c.o.Root, p)
		if err := os.MkdirAll(parent(full), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		changed, err := fsx.WriteFile(full, body, fsx.WriteOptions{Mode: mode})
		if err != nil {
			errs = append(errs, fmt.Errorf("persist network config of %s: %w", w.mac, err))
			continue
		}
		if changed {
			acts = append(acts, "write "+p)
		}
	}
	return acts, errors.Join(errs...)
}

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
	if name != "" {
		fmt.Fprintf(&b, "[connection]\nid=prewarm-%s\ntype=ethernet\ninterface-name=%s\n", name, name)
	} else { // offline: matched by MAC alone
		fmt.Fprintf(&b, "[connection]\nid=prewarm-%s\ntype=ethernet\n", strings.ReplaceAll(w.mac, ":", ""))
	}
	fmt.Fprintf(&b, "autoconnect-priority=100\n\n[ethernet]\nmac-address=%s\n", strings.ToUpper(w.mac))
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
	b.WriteString(macMark(w.mac))
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
