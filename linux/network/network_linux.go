package network

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/netmgr"
	"github.com/prewarm/prewarm/linux/nl"
	"github.com/prewarm/prewarm/shared/config"
	"golang.org/x/sys/unix"
)

// Options configure a Configurator.
type Options struct {
	// Root is the target root of persisted files ("/" on a live system).
	Root string
	// StateDir holds network.json: the addresses and routes the agent added.
	StateDir string
	Runner   run.Runner
	Logger   *slog.Logger
	// Live says Root is the running system. Only then are links changed
	// through netlink (and systemd-resolved used); otherwise Root is an
	// image and the network section is only persisted under it, matched by
	// MAC.
	Live bool
	// RunDir defaults to /run.
	RunDir string
	// DialBus connects to the system bus of the running network manager
	// (default netmgr.Dial), used only on the live system (Root "/").
	DialBus func(context.Context) (*netmgr.Conn, error)
}

// Configurator implements agent.NetworkConfigurator.
type Configurator struct {
	o   Options
	log *slog.Logger
}

var _ agent.NetworkConfigurator = (*Configurator)(nil)

// ErrInvalid marks a malformed interface entry.
var ErrInvalid = errors.New("invalid network config")

// New returns a Configurator.
func New(o Options) *Configurator {
	o.Root = cmp.Or(o.Root, "/")
	o.RunDir = cmp.Or(o.RunDir, "/run")
	log, runner := run.Defaults(o.Logger, o.Runner)
	o.Runner = runner
	return &Configurator{o: o, log: log.With("component", "network")}
}

// owned is what the agent added to one interface.
type owned struct {
	Addresses []string `json:"addresses,omitempty"`
	Routes    []route  `json:"routes,omitempty"`
	DNS       string   `json:"dns,omitempty"` // what was last sent to resolved
}

type route struct {
	To  string `json:"to"`
	Via string `json:"via"`
	// Metric is the route's priority, 0 for the kernel's default (absent
	// in records written before metrics, which were all at the default).
	Metric uint32 `json:"metric,omitempty"`
}

// ipv6DefaultPriority is the priority the kernel gives an IPv6 route added
// without one (IP6_RT_PRIO_USER); an IPv4 route's default is 0.
const ipv6DefaultPriority = 1024

// kernelPriority is the priority the kernel gives a route to dst added
// with metric (0: none).
func kernelPriority(dst netip.Prefix, metric uint32) uint32 {
	if metric == 0 && dst.Addr().Is6() {
		return ipv6DefaultPriority
	}
	return metric
}

// routeKey is how r is recorded: canonical text, no zone, and the
// kernel's default priority as 0, so that a record is one value whichever
// way the route was asked for.
func routeKey(r nl.Route) route {
	m := r.Priority
	if r.Dst.Addr().Is6() && m == ipv6DefaultPriority {
		m = 0
	}
	return route{To: prefix(r.Dst.Masked()), Via: addr(r.Gateway), Metric: m}
}

// parse reads a recorded route as the kernel holds it. A zone, which a
// state file written before zones were refused may hold, is dropped: the
// kernel's route has none, and comparing with it would never match (the
// route would be leaked, and every later add of it would fail with "file
// exists").
func (o route) parse() (nl.Route, bool) {
	dst, err1 := netip.ParsePrefix(o.To)
	gw, err2 := netip.ParseAddr(o.Via)
	return nl.Route{Dst: dst, Gateway: gw.WithZone(""), Priority: kernelPriority(dst, o.Metric)}, err1 == nil && err2 == nil
}

// describe is a route of l as an action names it: "10.2.0.0/16 via
// 10.1.0.254 dev eth0", with " metric N" when it has one of its own.
func describe(r nl.Route, dev string) string {
	s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gateway, dev)
	if m := routeKey(r).Metric; m != 0 {
		s += fmt.Sprintf(" metric %d", m)
	}
	return s
}

type state struct {
	Interfaces map[string]*owned `json:"interfaces"` // by lower-case MAC
}

const stateFile = "network.json"

func (c *Configurator) load() (*state, error) {
	st := &state{Interfaces: map[string]*owned{}}
	if c.o.StateDir == "" {
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(c.o.StateDir, stateFile))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read network state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parse network state %s: %w", filepath.Join(c.o.StateDir, stateFile), err)
	}
	if st.Interfaces == nil {
		st.Interfaces = map[string]*owned{}
	}
	return st, nil
}

func (c *Configurator) save(st *state) error {
	if c.o.StateDir == "" {
		return nil
	}
	return fsx.WriteJSON(filepath.Join(c.o.StateDir, stateFile), st)
}

// wanted is one interface's parsed desired state.
type wanted struct {
	cfg     config.Interface
	mac     string
	addrs   []netip.Prefix
	gateway netip.Addr
	routes  []nl.Route // Index filled in later
	dns     []netip.Addr
}

// parse checks one interface entry and turns it into the wanted state. The
// check is the document's own rule set (config.Interface.Validate), the
// agent's second wall for an entry that never went through Decode: an IPv6
// zone in any address field, a missing MAC, a broken value fails with
// ErrInvalid naming the field.
func parse(in config.Interface) (*wanted, error) {
	var ve *config.ValidationError
	if err := in.Validate(); errors.As(err, &ve) {
		errs := make([]error, len(ve.Fields))
		for i, f := range ve.Fields {
			errs[i] = fmt.Errorf("%s: %w: %s", f.Path, ErrInvalid, f.Reason)
		}
		return nil, errors.Join(errs...)
	} else if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return newWanted(in), nil
}

// newWanted is in's wanted state, checked or not: routes go to their
// network, and no address keeps a zone, so that whatever let one through,
// it never reaches a file or a command.
func newWanted(in config.Interface) *wanted {
	w := &wanted{cfg: in, mac: in.MAC.String(), gateway: in.Gateway4.WithZone("")}
	w.addrs = slices.Clone(in.Addresses)
	for _, r := range in.Routes {
		w.routes = append(w.routes, nl.Route{Dst: r.To.Masked(), Gateway: r.Via.WithZone(""), Priority: kernelPriority(r.To, r.Metric)})
	}
	for _, a := range in.Nameservers {
		w.dns = append(w.dns, a.WithZone(""))
	}
	return w
}

// metric is the document's metric of w.routes[i] (0: none), which the
// persisted files carry as the document gave it.
func (w *wanted) metric(i int) uint32 {
	if i < len(w.cfg.Routes) {
		return w.cfg.Routes[i].Metric
	}
	return 0
}

func (w *wanted) allRoutes() []nl.Route {
	rs := slices.Clone(w.routes)
	if w.gateway.IsValid() {
		rs = append([]nl.Route{{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: w.gateway}}, rs...)
	}
	return rs
}

// ApplyNetwork implements agent.NetworkConfigurator.
//
// Every file and DNS setting is rendered before anything changes: a value a
// format cannot carry fails the apply with nothing changed. A live change
// that fails (a gateway the kernel will not route through) fails that
// interface: its persisted file keeps the last generation that applied, DNS
// is left as it was, and the error names every change this apply made to
// the link before the failure; those are recorded as the agent's, so the
// next generation reconciles them like any other.
func (c *Configurator) ApplyNetwork(ctx context.Context, n *config.Network) (agent.StepResult, error) {
	var res agent.StepResult
	if n == nil || n.Interfaces == nil {
		return res, nil
	}
	var ws []*wanted
	var errs []error
	for i, in := range n.Interfaces {
		w, err := parse(in)
		if err != nil {
			errs = append(errs, fmt.Errorf("configure network.interfaces[%d] (%s): %w", i, in.MAC, err))
			continue
		}
		ws = append(ws, w)
	}
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	if !c.o.Live {
		// An image root, not the running machine: its links are not this
		// kernel's, so netlink is left alone and only the files are written.
		files, err := c.renderFiles(ws, nil)
		dns, err2 := c.planDNS(ws, nil)
		if err != nil || err2 != nil {
			return res, errors.Join(err, err2)
		}
		acts, err := c.persist(ws, nil, files, nil)
		res.Actions = append(res.Actions, acts...)
		if err != nil {
			errs = append(errs, err)
		}
		acts, err = c.applyDNS(ctx, dns, &state{Interfaces: map[string]*owned{}})
		res.Actions = append(res.Actions, acts...)
		if err != nil {
			errs = append(errs, err)
		}
		res.Changed = len(res.Actions) > 0
		return res, errors.Join(errs...)
	}
	st, err := c.load()
	if err != nil {
		return res, err
	}
	conn, err := nl.Dial()
	if err != nil {
		return res, err
	}
	defer conn.Close()
	links := map[string]nl.Link{}
	failed := map[string]bool{}
	for _, w := range ws {
		l, err := conn.LinkByMAC(w.mac)
		if err != nil {
			errs = append(errs, fmt.Errorf("configure network: %w", err))
			failed[w.mac] = true
			continue
		}
		links[w.mac] = l
	}
	files, err := c.renderFiles(ws, links)
	dns, err2 := c.planDNS(ws, links)
	if err != nil || err2 != nil {
		return res, errors.Join(append(errs, err, err2)...)
	}
	// A NIC that is not there (yet) fails the step but holds back nothing
	// else; a live apply that failed leaves DNS as it was.
	applyFailed := false
	for _, w := range ws {
		l, ok := links[w.mac]
		if !ok {
			continue
		}
		acts, err := c.applyLive(conn, l, w, st)
		res.Actions = append(res.Actions, acts...)
		if err != nil {
			failed[w.mac], applyFailed = true, true
			kept := "none"
			if len(acts) > 0 {
				kept = strings.Join(acts, "; ")
			}
			errs = append(errs, fmt.Errorf("configure %s (%s): %w (changes this apply made before the failure, kept and recorded as the agent's: %s; its persisted config and DNS were left as they were)", l.Name, w.mac, err, kept))
		}
	}
	// Saved even after an error: what was added before it is owned.
	if err := c.save(st); err != nil {
		errs = append(errs, fmt.Errorf("record network state: %w", err))
	}
	acts, err := c.persist(ws, links, files, failed)
	res.Actions = append(res.Actions, acts...)
	if err != nil {
		errs = append(errs, err)
	}
	acts, err = c.applyManager(ctx, ws, links, files, failed, acts)
	res.Actions = append(res.Actions, acts...)
	if err != nil {
		errs = append(errs, err)
	}
	if !applyFailed {
		acts, err = c.applyDNS(ctx, dns, st)
		res.Actions = append(res.Actions, acts...)
		if err != nil {
			errs = append(errs, err)
		}
		if err := c.save(st); err != nil {
			errs = append(errs, fmt.Errorf("record network state: %w", err))
		}
	}
	res.Changed = len(res.Actions) > 0
	return res, errors.Join(errs...)
}

// applyLive reconciles one link through rtnetlink. Every address or route
// it adds is recorded in st at once, and every one it removes is forgotten at
// once, so an error part way leaves st true to the link.
func (c *Configurator) applyLive(conn *nl.Conn, l nl.Link, w *wanted, st *state) ([]string, error) {
	var acts []string
	own := st.Interfaces[w.mac]
	if own == nil {
		own = &owned{}
		st.Interfaces[w.mac] = own
	}
	if w.cfg.MTU > 0 && l.MTU != w.cfg.MTU {
		if err := conn.SetMTU(l.Index, w.cfg.MTU); err != nil {
			return acts, fmt.Errorf("set mtu %d: %w", w.cfg.MTU, err)
		}
		acts = append(acts, fmt.Sprintf("set mtu of %s to %d", l.Name, w.cfg.MTU))
	}
	if w.cfg.DHCP4 {
		// DHCP owns addresses and routes: take back what a static config
		// of this interface added.
		return c.releaseStatic(conn, l, own, acts)
	}
	static := w.cfg.Addresses != nil || w.gateway.IsValid() || w.cfg.Routes != nil
	if static && !l.Up {
		if err := conn.SetUp(l.Index); err != nil {
			return acts, fmt.Errorf("bring up: %w", err)
		}
		acts = append(acts, "bring up "+l.Name)
	}

	// Addresses: add the missing, remove only those the agent added.
	if w.cfg.Addresses != nil {
		as, err := conn.Addrs(l.Index)
		if err != nil {
			return acts, err
		}
		have := map[netip.Prefix]bool{}
		for _, a := range as {
			have[a.Prefix] = true
		}
		removed := false
		for _, p := range w.addrs {
			if have[p] {
				continue // the agent's if it added it, else someone else's
			}
			if err := conn.ReplaceAddr(l.Index, p, 0, 0); err != nil {
				return acts, err
			}
			have[p] = true
			acts = append(acts, fmt.Sprintf("add %s to %s", p, l.Name))
			if !slices.Contains(own.Addresses, p.String()) {
				own.Addresses = append(own.Addresses, p.String())
			}
		}
		for _, s := range slices.Clone(own.Addresses) {
			p, err := netip.ParsePrefix(s)
			if err == nil && slices.Contains(w.addrs, p) {
				continue
			}
			if err == nil && have[p] {
				if err := conn.DelAddr(l.Index, p); err != nil {
					return acts, err
				}
				acts = append(acts, fmt.Sprintf("remove %s from %s", p, l.Name))
				removed = true
			}
			own.Addresses = slices.DeleteFunc(own.Addresses, func(x string) bool { return x == s })
		}
		if removed {
			// A new address in the old one's subnet is its secondary,
			// and without promote_secondaries (networkd turns it on;
			// NetworkManager and the kernel's default do not) the kernel
			// deletes the secondaries with their primary: add back what
			// it took.
			as, err := conn.Addrs(l.Index)
			if err != nil {
				return acts, err
			}
			for _, p := range w.addrs {
				if slices.ContainsFunc(as, func(a nl.Addr) bool { return a.Prefix == p }) {
					continue
				}
				if err := conn.ReplaceAddr(l.Index, p, 0, 0); err != nil {
					return acts, err
				}
				acts = append(acts, fmt.Sprintf("add %s to %s again (the kernel removed it with the primary address it was secondary to)", p, l.Name))
				if !slices.Contains(own.Addresses, p.String()) {
					own.Addresses = append(own.Addresses, p.String())
				}
			}
		}
	}

	// Routes (the default gateway is one): the same rule. The kernel keys
	// a route by destination and priority (table and tos being fixed
	// here), so a route whose metric changed is another route: the new one
	// is added, then the agent's old one removed, and the link is never
	// without either.
	if w.gateway.IsValid() || w.cfg.Routes != nil {
		rs, err := conn.Routes()
		if err != nil {
			return acts, err
		}
		has := func(r nl.Route) bool {
			return slices.ContainsFunc(rs, func(x nl.Route) bool {
				return x.Index == l.Index && x.Dst == r.Dst && x.Gateway == r.Gateway && x.Priority == r.Priority
			})
		}
		want := w.allRoutes()
		var keep []route
		for _, r := range want {
			keep = append(keep, routeKey(r))
		}
		for _, r := range want {
			r.Index = l.Index
			key := routeKey(r)
			if has(r) {
				continue // the agent's if it added it, else someone else's
			}
			// Appended beside the routes of other links to the same
			// destination and metric (a DHCP client's default route on
			// eth0 stays when eth1 has gateway4: the kernel keeps both,
			// as NetworkManager adds them), then the link's own route to
			// it through another gateway goes: the agent's that this
			// document no longer wants (the gateway changed), or
			// another's (DHCP option 121 installs 169.254.169.254/32, for
			// one), which the document's static route takes the place
			// of, as networkd or ifupdown would make it. The link is
			// never without the route, and another link's route is never
			// replaced: an exclusive add fails with "file exists" for any
			// link's route there, and a replace takes the first of them.
			removed, err := conn.PutRoute(r, rs)
			if err != nil {
				return acts, err
			}
			if len(removed) == 0 {
				acts = append(acts, "add route "+describe(r, l.Name))
			}
			for _, x := range removed {
				if i := slices.IndexFunc(own.Routes, func(o route) bool {
					y, ok := o.parse()
					return ok && y.Dst == x.Dst && y.Gateway == x.Gateway && y.Priority == x.Priority
				}); i >= 0 {
					acts = append(acts, fmt.Sprintf("replace route %s by one via %s", describe(x, l.Name), r.Gateway))
					own.Routes = slices.Delete(own.Routes, i, i+1)
				} else {
					acts = append(acts, fmt.Sprintf("replace route %s dev %s by one via %s", r.Dst, l.Name, r.Gateway))
				}
				rs = slices.DeleteFunc(rs, func(y nl.Route) bool { return y == x })
			}
			rs = append(rs, r)
			if !slices.Contains(own.Routes, key) {
				own.Routes = append(own.Routes, key)
			}
		}
		for _, o := range slices.Clone(own.Routes) {
			if slices.Contains(keep, o) {
				continue
			}
			// Its priority, 0 included, names the one route: the kernel
			// matches a 0 as any priority but deletes the lowest first,
			// and has saw that one at 0.
			if r, ok := o.parse(); ok {
				r.Index = l.Index
				if has(r) {
					if err := conn.DelRoute(r); err != nil {
						return acts, err
					}
					acts = append(acts, "remove route "+describe(r, l.Name))
				}
			}
			own.Routes = slices.DeleteFunc(own.Routes, func(x route) bool { return x == o })
		}
	}
	return acts, nil
}

// releaseStatic removes from a link that DHCP now owns the addresses and
// routes the agent added to it, and forgets them. An address that has since
// got a lifetime (a DHCP lease of the same address) or a route that is no
// longer the agent's static one (replaced by a DHCP client) is forgotten
// but left in place: it is someone else's now.
func (c *Configurator) releaseStatic(conn *nl.Conn, l nl.Link, own *owned, acts []string) ([]string, error) {
	if len(own.Routes) > 0 {
		rs, err := conn.Routes()
		if err != nil {
			return acts, err
		}
		for _, o := range slices.Clone(own.Routes) {
			r, ok := o.parse()
			r.Index = l.Index
			ours := ok && slices.ContainsFunc(rs, func(x nl.Route) bool {
				return x.Index == l.Index && x.Dst == r.Dst && x.Gateway == r.Gateway && x.Priority == r.Priority && x.Protocol == unix.RTPROT_STATIC
			})
			if ours {
				if err := conn.DelRoute(r); err != nil {
					return acts, err
				}
				acts = append(acts, "remove route "+describe(r, l.Name))
			}
			own.Routes = slices.DeleteFunc(own.Routes, func(x route) bool { return x == o })
		}
	}
	if len(own.Addresses) > 0 {
		as, err := conn.Addrs(l.Index)
		if err != nil {
			return acts, err
		}
		for _, s := range slices.Clone(own.Addresses) {
			p, err := netip.ParsePrefix(s)
			ours := err == nil && slices.ContainsFunc(as, func(a nl.Addr) bool { return a.Prefix == p && a.Permanent })
			if ours {
				if err := conn.DelAddr(l.Index, p); err != nil {
					return acts, err
				}
				acts = append(acts, fmt.Sprintf("remove %s from %s", p, l.Name))
			}
			own.Addresses = slices.DeleteFunc(own.Addresses, func(x string) bool { return x == s })
		}
	}
	return acts, nil
}
