package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/state"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

type networkConfigurator struct {
	stateDir string
	runner   run.Runner
	log      *slog.Logger

	mu sync.Mutex // one reconcile at a time: a document's, or a restore
}

// The platform's records of the network, in its state directory.
const (
	// ownedFile: what the agent added, per MAC (plan.Owned).
	ownedFile = "network.json"
	// appliedFile: the document's interfaces applied last, per MAC, which
	// Restore applies again.
	appliedFile = "network-applied.json"
)

// ApplyNetwork reconciles the static configuration of every interface the
// document names (matched by MAC) through iphlpapi. What the agent added is
// recorded so a later document can take it away; nothing else is removed.
//
// The addresses and routes iphlpapi adds live in the active store only:
// MIB_UNICASTIPADDRESS_ROW and MIB_IPFORWARD_ROW2 have no persistent
// flag, and CreateUnicastIpAddressEntry's address is gone after a restart
// (or a reset of the NIC). Rather than a second way to configure them
// (netsh or New-NetIPAddress with the persistent store, which outlive the
// agent, its uninstall and its record of what it added), the interfaces
// applied are recorded (appliedFile) and Restore applies them again when
// the agent starts and when a NIC appears: the same reconcile, so it
// changes only what differs and removes only what the agent added.
func (n *networkConfigurator) ApplyNetwork(ctx context.Context, nw *config.Network) (agent.StepResult, error) {
	if nw == nil || nw.Interfaces == nil {
		return agent.StepResult{}, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	applied := map[string]config.Interface{}
	if err := state.Load(filepath.Join(n.stateDir, appliedFile), &applied); err != nil {
		return agent.StepResult{}, err
	}
	for _, in := range nw.Interfaces {
		applied[strings.ToLower(in.MAC.String())] = in
	}
	// The document's wish is recorded before it is applied: an interface
	// that fails now is tried again by the next Restore.
	if err := state.Save(filepath.Join(n.stateDir, appliedFile), applied); err != nil {
		return agent.StepResult{}, err
	}
	res, err := n.reconcile(ctx, nw.Interfaces)
	return res.StepResult(), err
}

// Restore applies again the interfaces applied last (appliedFile), after a
// restart or a NIC's reset took the active store's addresses and routes
// away. It changes nothing when nothing differs, and logs what it did.
func (n *networkConfigurator) Restore(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	applied := map[string]config.Interface{}
	if err := state.Load(filepath.Join(n.stateDir, appliedFile), &applied); err != nil {
		return err
	}
	if len(applied) == 0 {
		return nil
	}
	macs := slices.Sorted(maps.Keys(applied))
	ins := make([]config.Interface, 0, len(macs))
	for _, m := range macs {
		ins = append(ins, applied[m])
	}
	res, err := n.reconcile(ctx, ins)
	if r := res.StepResult(); r.Changed {
		n.log.Info("static network restored", "actions", r.Actions)
	}
	return err
}

// reconcile applies ins, recording what the agent added and removed.
func (n *networkConfigurator) reconcile(ctx context.Context, ins []config.Interface) (plan.Result, error) {
	var res plan.Result
	recPath := filepath.Join(n.stateDir, ownedFile)
	owned := map[string]plan.Owned{}
	if err := state.Load(recPath, &owned); err != nil {
		return res, err
	}
	as, err := adapters()
	if err != nil {
		return res, err
	}
	var errs []error
	for _, in := range ins {
		want, err := plan.ParseInterface(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a, ok := adapterByMAC(as, want.MAC)
		if !ok {
			errs = append(errs, fmt.Errorf("interface %s: no adapter with this MAC", in.MAC))
			continue
		}
		have, err := n.current(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %s (%s): %w", a.Name, in.MAC, err))
			continue
		}
		ops := plan.Diff(want, in.DHCP4, have, owned[want.MAC])
		if ops.Empty() {
			continue
		}
		done, err := n.apply(ctx, a, ops)
		owned[want.MAC] = plan.NextOwned(owned[want.MAC], done)
		for _, act := range done.Actions(a.Name) {
			res.Did(act, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %s (%s): %w", a.Name, in.MAC, err))
		}
	}
	if err := state.Save(recPath, owned); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

func adapterByMAC(as []adapter, mac string) (adapter, bool) {
	for _, a := range as {
		if strings.EqualFold(a.MAC, mac) {
			return a, true
		}
	}
	return adapter{}, false
}

// current reads what the agent manages of a.
func (n *networkConfigurator) current(a adapter) (plan.Have, error) {
	h := plan.Have{DHCP: a.DHCP, MTU: a.MTU, InUse: a.DNS}
	for _, u := range a.Unicast {
		if u.Manual {
			h.Addresses = append(h.Addresses, u.Prefix)
		}
	}
	routes, err := staticRoutes(a.LUID)
	if err != nil {
		return h, err
	}
	h.Routes = routes
	if mtu, err := ipInterfaceMTU(a.LUID); err == nil {
		h.MTU = mtu
	}
	guid, err := windows.GUIDFromString(a.GUID)
	if err != nil {
		return h, fmt.Errorf("adapter GUID %q: %w", a.GUID, err)
	}
	if !winapi.Available("GetInterfaceDnsSettings") {
		// Before Windows 10 2004 / Server 2022 (Server 2019): the
		// effective servers, and the search list from the registry
		// (the Domain suffix before build 19041: searchStrategy).
		h.DNS = a.DNS
		h.Search = registrySearchList(a.GUID, searchValue(searchStrategy()))
		return h, nil
	}
	for _, v6 := range []bool{false, true} {
		var s winapi.DNSInterfaceSettings
		s.Version = winapi.DNS_INTERFACE_SETTINGS_VERSION1
		if v6 {
			s.Flags = winapi.DNS_SETTING_IPV6
		}
		if err := winapi.GetInterfaceDnsSettings(guid, &s); err != nil {
			if !v6 {
				// As where the call is missing: the effective servers.
				n.log.Debug("GetInterfaceDnsSettings failed; reading the effective name servers", "interface", a.Name, "err", err)
				h.DNS, h.Search = a.DNS, registrySearchList(a.GUID, searchValue(searchStrategy()))
				return h, nil
			}
			// The IPv6 list unread: a document's IPv6 servers are set
			// again each time, which changes nothing.
			n.log.Debug("GetInterfaceDnsSettings (IPv6) failed", "interface", a.Name, "err", err)
			continue
		}
		for _, x := range plan.ParseDNSList(windows.UTF16PtrToString(s.NameServer)) {
			// Each call's own family only, whatever the other returns.
			if ip, err := netip.ParseAddr(x); err == nil && ip.Unmap().Is4() != v6 {
				h.DNS = append(h.DNS, ip)
			}
		}
		if !v6 {
			h.Search = plan.ParseDNSList(windows.UTF16PtrToString(s.SearchList))
		}
		winapi.FreeInterfaceDnsSettings(&s)
	}
	return h, nil
}

// apply carries out ops in order and returns the part that was done.
func (n *networkConfigurator) apply(ctx context.Context, a adapter, ops plan.Ops) (plan.Ops, error) {
	var done plan.Ops
	idx := "name=" + strconv.Itoa(int(a.Index))
	// The agent's routes go first: once DHCP is back on, a lease's route
	// may have the key of one of them (plan.Ops).
	for _, r := range ops.DelRoutes {
		row := forwardRow(a, r)
		if err := winapi.DeleteIpForwardEntry2(&row); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
			return done, fmt.Errorf("remove route %s: %w", r, err)
		}
		done.DelRoutes = append(done.DelRoutes, r)
	}
	if ops.EnableDHCP {
		// iphlpapi has no call that turns DHCP on either: netsh's
		// "source=dhcp" does, and removes the static addresses.
		if _, err := n.runner.Run(ctx, run.Cmd{Name: "netsh", Args: []string{"interface", "ipv4", "set", "address", idx, "source=dhcp"}}); err != nil {
			return done, fmt.Errorf("enable DHCP: %w", err)
		}
		done.EnableDHCP = true
	}
	if ops.ResetDNS {
		for _, fam := range []string{"ipv4", "ipv6"} {
			if _, err := n.runner.Run(ctx, run.Cmd{Name: "netsh", Args: []string{"interface", fam, "set", "dnsservers", idx, "source=dhcp"}}); err != nil {
				return done, fmt.Errorf("name servers from DHCP (%s): %w", fam, err)
			}
		}
		done.ResetDNS = true
	}
	if ops.DisableDHCP {
		// iphlpapi has no call that turns DHCP off; netsh's "static" does,
		// with the first address, which CreateUnicastIpAddressEntry then
		// finds present.
		p := ops.Static
		mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
		_, err := n.runner.Run(ctx, run.Cmd{Name: "netsh", Args: []string{"interface", "ipv4", "set", "address",
			idx, "source=static", "address=" + p.Addr().String(), "mask=" + mask}})
		if err != nil {
			return done, fmt.Errorf("disable DHCP: %w", err)
		}
		done.DisableDHCP, done.Static = true, p
	}
	for _, p := range ops.DelAddrs {
		row := unicastRow(a, p)
		if err := winapi.DeleteUnicastIpAddressEntry(&row); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
			return done, fmt.Errorf("remove address %s: %w", p, err)
		}
		done.DelAddrs = append(done.DelAddrs, p)
	}
	done.Primary = ops.Primary
	for _, p := range ops.AddAddrs {
		row := addedRow(a, p, ops.Primary)
		if err := winapi.CreateUnicastIpAddressEntry(&row); err != nil && !errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
			return done, fmt.Errorf("add address %s: %w", p, err)
		}
		done.AddAddrs = append(done.AddAddrs, p)
	}
	for _, r := range ops.AddRoutes {
		row := forwardRow(a, r)
		if err := winapi.CreateIpForwardEntry2(&row); err != nil && !errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
			return done, fmt.Errorf("add route %s: %w", r, err)
		}
		done.AddRoutes = append(done.AddRoutes, r)
	}
	for _, r := range ops.SetRoutes {
		// The row as it is, with only the metric changed: Windows keys
		// it by interface, destination and next hop, so a new metric is
		// the same route.
		row := forwardRow(a, r)
		if err := windows.GetIpForwardEntry2(&row); err != nil {
			return done, fmt.Errorf("read route %s: %w", r.Key(), err)
		}
		row.Metric = r.Metric
		if err := winapi.SetIpForwardEntry2(&row); err != nil {
			return done, fmt.Errorf("set the metric of route %s to %d: %w", r.Key(), r.Metric, err)
		}
		done.SetRoutes = append(done.SetRoutes, r)
	}
	if ops.SetMTU != 0 {
		if err := setMTU(a.LUID, ops.SetMTU); err != nil {
			return done, err
		}
		done.SetMTU = ops.SetMTU
	}
	if ops.SetDNS || ops.SetSearch {
		if err := n.setDNS(ctx, a, ops); err != nil {
			return done, err
		}
		done.SetDNS, done.DNS, done.SetSearch, done.Search = ops.SetDNS, ops.DNS, ops.SetSearch, ops.Search
	}
	return done, nil
}

func (n *networkConfigurator) setDNS(ctx context.Context, a adapter, ops plan.Ops) error {
	v4, v6 := plan.SplitDNS(unzoned(ops.DNS))
	guid, err := windows.GUIDFromString(a.GUID)
	if err != nil {
		return fmt.Errorf("adapter GUID %q: %w", a.GUID, err)
	}
	strategy := searchStrategy()
	if winapi.Available("SetInterfaceDnsSettings") {
		// One call per family: the name servers of the IPv6 list need
		// DNS_SETTING_IPV6, without which Windows takes them for the IPv4
		// list and refuses them. The search list is the interface's, set
		// with the IPv4 call.
		for _, fam := range []struct {
			v6      bool
			servers []netip.Addr
		}{{false, v4}, {true, v6}} {
			s := winapi.DNSInterfaceSettings{Version: winapi.DNS_INTERFACE_SETTINGS_VERSION1}
			if fam.v6 {
				s.Flags |= winapi.DNS_SETTING_IPV6
			}
			if ops.SetDNS {
				s.Flags |= winapi.DNS_SETTING_NAMESERVER
				if s.NameServer, err = windows.UTF16PtrFromString(plan.DNSList(fam.servers)); err != nil {
					return err
				}
			}
			if ops.SetSearch && !fam.v6 && strategy == plan.SearchAPI {
				s.Flags |= winapi.DNS_SETTING_SEARCHLIST
				if s.SearchList, err = windows.UTF16PtrFromString(strings.Join(ops.Search, ",")); err != nil {
					return err
				}
			}
			if s.Flags&^winapi.DNS_SETTING_IPV6 == 0 {
				continue
			}
			if err := winapi.SetInterfaceDnsSettings(guid, &s); err != nil {
				return fmt.Errorf("SetInterfaceDnsSettings (IPv6 %v): %w", fam.v6, err)
			}
		}
		if ops.SetSearch && strategy != plan.SearchAPI {
			return setRegistrySearchList(a.GUID, searchValue(strategy), ops.Search)
		}
		return nil
	}
	// Server 2019 and other Windows before 10 2004: netsh for the name
	// servers of each family, and the search domain in the registry: the
	// interface's Domain value (its connection-specific suffix, one
	// domain) before build 19041, whose DNS client ignores an interface's
	// SearchList; the SearchList value where the build reads it but the
	// call is missing (Wine).
	if ops.SetDNS {
		idx := "name=" + strconv.Itoa(int(a.Index))
		for _, fam := range []struct {
			name    string
			servers []netip.Addr
		}{{"ipv4", v4}, {"ipv6", v6}} {
			args := []string{"interface", fam.name, "set", "dnsservers", idx, "source=static", "address=none", "validate=no"}
			if _, err := n.runner.Run(ctx, run.Cmd{Name: "netsh", Args: args}); err != nil {
				return fmt.Errorf("set %s name servers: %w", fam.name, err)
			}
			for i, s := range fam.servers {
				args := []string{"interface", fam.name, "add", "dnsservers", idx, "address=" + s.String(), "index=" + strconv.Itoa(i+1), "validate=no"}
				if _, err := n.runner.Run(ctx, run.Cmd{Name: "netsh", Args: args}); err != nil {
					return fmt.Errorf("add name server %s: %w", s, err)
				}
			}
		}
	}
	if ops.SetSearch {
		if err := setRegistrySearchList(a.GUID, searchValue(strategy), ops.Search); err != nil {
			return err
		}
	}
	return nil
}

// unzoned returns as without IPv6 zones. Validation and plan.ParseInterface
// refuse zones already; this second wall keeps one, whatever let it through,
// from reaching SetInterfaceDnsSettings or netsh, where its bytes (',' or
// ' ') would be list syntax.
func unzoned(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.WithZone("")
	}
	return out
}

// addedRow is the row of an address the agent adds: SkipAsSource unless
// it is the document's primary address (plan.Ops.Primary).
func addedRow(a adapter, p, primary netip.Prefix) windows.MibUnicastIpAddressRow {
	row := unicastRow(a, p)
	if p != primary {
		row.SkipAsSource = 1
	}
	return row
}

func sockaddr4(ip netip.Addr) windows.RawSockaddrInet {
	var sa windows.RawSockaddrInet
	sa.Family = windows.AF_INET
	// SOCKADDR_IN: family, port, then the address in network byte order.
	*(*[4]byte)(unsafe.Pointer(&sa.Data[0])) = ip.As4()
	return sa
}

func addrOf(sa *windows.RawSockaddrInet) (netip.Addr, bool) {
	if sa.Family != windows.AF_INET {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(&sa.Data[0]))), true
}

func unicastRow(a adapter, p netip.Prefix) windows.MibUnicastIpAddressRow {
	var row windows.MibUnicastIpAddressRow
	winapi.InitializeUnicastIpAddressEntry(&row)
	sa := sockaddr4(p.Addr())
	*(*windows.RawSockaddrInet)(unsafe.Pointer(&row.Address)) = sa
	row.InterfaceLuid = a.LUID
	row.InterfaceIndex = a.Index
	row.OnLinkPrefixLength = uint8(p.Bits())
	row.PrefixOrigin = winapi.IpPrefixOriginManual
	row.SuffixOrigin = winapi.IpSuffixOriginManual
	row.ValidLifetime = winapi.InfiniteLifetime
	row.PreferredLifetime = winapi.InfiniteLifetime
	row.DadState = winapi.IpDadStatePreferred
	return row
}

func forwardRow(a adapter, r plan.Route) windows.MibIpForwardRow2 {
	var row windows.MibIpForwardRow2
	winapi.InitializeIpForwardEntry(&row)
	row.InterfaceLuid = a.LUID
	row.InterfaceIndex = a.Index
	row.DestinationPrefix.Prefix = sockaddr4(r.To.Addr())
	row.DestinationPrefix.PrefixLength = uint8(r.To.Bits())
	row.NextHop = sockaddr4(r.Via)
	// The route's own metric, MIB_IPFORWARD_ROW2's "route metric offset":
	// Windows adds the interface metric when it compares routes. A route
	// without one gets offset 0 (the interface metric alone), as an IPv4
	// route without one gets metric 0 on Linux, not the value
	// InitializeIpForwardEntry leaves there, which its documentation calls
	// invalid.
	row.Metric = r.Metric
	row.Protocol = windows.MIB_IPPROTO_NETMGMT
	row.ValidLifetime = winapi.InfiniteLifetime
	row.PreferredLifetime = winapi.InfiniteLifetime
	return row
}

// staticRoutes returns the IPv4 routes with a gateway that were configured
// statically on the interface luid, each with its own metric (without the
// interface metric Windows adds to it).
func staticRoutes(luid uint64) ([]plan.Route, error) {
	var t *windows.MibIpForwardTable2
	if err := windows.GetIpForwardTable2(windows.AF_INET, &t); err != nil {
		return nil, fmt.Errorf("GetIpForwardTable2: %w", err)
	}
	defer windows.FreeMibTable(unsafe.Pointer(t))
	var out []plan.Route
	for _, row := range t.Rows() {
		if row.InterfaceLuid != luid || row.Protocol != windows.MIB_IPPROTO_NETMGMT {
			continue
		}
		to, ok1 := addrOf(&row.DestinationPrefix.Prefix)
		via, ok2 := addrOf(&row.NextHop)
		if !ok1 || !ok2 || via.IsUnspecified() {
			continue
		}
		out = append(out, plan.Route{To: netip.PrefixFrom(to, int(row.DestinationPrefix.PrefixLength)), Via: via, Metric: row.Metric})
	}
	return out, nil
}

func ipInterfaceMTU(luid uint64) (int, error) {
	var row windows.MibIpInterfaceRow
	winapi.InitializeIpInterfaceEntry(&row)
	row.Family = windows.AF_INET
	row.InterfaceLuid = luid
	if err := windows.GetIpInterfaceEntry(&row); err != nil {
		return 0, fmt.Errorf("GetIpInterfaceEntry: %w", err)
	}
	return int(row.NlMtu), nil
}

func setMTU(luid uint64, mtu int) error {
	var row windows.MibIpInterfaceRow
	winapi.InitializeIpInterfaceEntry(&row)
	row.Family = windows.AF_INET
	row.InterfaceLuid = luid
	if err := windows.GetIpInterfaceEntry(&row); err != nil {
		return fmt.Errorf("GetIpInterfaceEntry: %w", err)
	}
	row.NlMtu = uint32(mtu)
	// SetIpInterfaceEntry rejects an IPv4 row whose SitePrefixLength is set.
	row.SitePrefixLength = 0
	if err := winapi.SetIpInterfaceEntry(&row); err != nil {
		return fmt.Errorf("set MTU %d: %w", mtu, err)
	}
	return nil
}
