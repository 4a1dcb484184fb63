package nl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Link is what the platform needs of a link.
type Link struct {
	Index    int
	Name     string
	MAC      string // lower case
	MTU      int
	Up       bool
	Loopback bool
}

// Addr is one address of a link.
type Addr struct {
	Prefix netip.Prefix
	// Permanent is false for addresses with a finite lifetime (DHCP).
	Permanent bool
	// Scope is the address scope (0 global, 253 link, 254 host).
	Scope uint8
}

// Route is one IPv4/IPv6 route of the main table.
type Route struct {
	Dst      netip.Prefix
	Gateway  netip.Addr
	Index    int
	Priority uint32
	Protocol uint8
}

// Conn is an rtnetlink connection.
type Conn struct {
	rt  *rtnetlink.Conn
	raw *netlink.Conn
}

// Dial opens a connection in the calling process's network namespace.
func Dial() (*Conn, error) {
	rt, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	raw, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	return &Conn{rt: rt, raw: raw}, nil
}

// Close closes c.
func (c *Conn) Close() error {
	c.raw.Close()
	return c.rt.Close()
}

// Links lists every link.
func (c *Conn) Links() ([]Link, error) {
	ls, err := c.rt.Link.List()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		k := Link{Index: int(l.Index), Up: l.Flags&unix.IFF_UP != 0, Loopback: l.Flags&unix.IFF_LOOPBACK != 0}
		if a := l.Attributes; a != nil {
			k.Name, k.MTU = a.Name, int(a.MTU)
			if len(a.Address) == 6 {
				k.MAC = a.Address.String()
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// ErrNoLink means no link matched.
var ErrNoLink = errors.New("no such interface")

// LinkByName finds a link by name.
func (c *Conn) LinkByName(name string) (Link, error) {
	ls, err := c.Links()
	if err != nil {
		return Link{}, err
	}
	for _, l := range ls {
		if l.Name == name {
			return l, nil
		}
	}
	return Link{}, fmt.Errorf("interface %q: %w", name, ErrNoLink)
}

// LinkByMAC finds a link by MAC (case-insensitive).
func (c *Conn) LinkByMAC(mac string) (Link, error) {
	ls, err := c.Links()
	if err != nil {
		return Link{}, err
	}
	for _, l := range ls {
		if l.MAC != "" && strings.EqualFold(l.MAC, mac) {
			return l, nil
		}
	}
	return Link{}, fmt.Errorf("interface with MAC %s: %w", mac, ErrNoLink)
}

// SetUp brings a link administratively up.
func (c *Conn) SetUp(index int) error {
	return c.rt.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(index), Flags: unix.IFF_UP, Change: unix.IFF_UP})
}

// SetMTU sets a link's MTU.
func (c *Conn) SetMTU(index, mtu int) error {
	return c.rt.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(index), Attributes: &rtnetlink.LinkAttributes{MTU: uint32(mtu)}})
}

// Addrs lists the addresses of a link.
func (c *Conn) Addrs(index int) ([]Addr, error) {
	as, err := c.rt.Address.List()
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []Addr
	for _, a := range as {
		if int(a.Index) != index || a.Attributes == nil {
			continue
		}
		ip := a.Attributes.Local
		if ip == nil {
			ip = a.Attributes.Address
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		flags := a.Attributes.Flags
		if flags == 0 {
			flags = uint32(a.Flags)
		}
		out = append(out, Addr{
			Prefix:    netip.PrefixFrom(addr.Unmap(), int(a.PrefixLength)),
			Permanent: flags&unix.IFA_F_PERMANENT != 0,
			Scope:     a.Scope,
		})
	}
	return out, nil
}

// GlobalPrefixes returns the global-scope addresses among as.
func GlobalPrefixes(as []Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range as {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// ReplaceAddr adds p to a link or refreshes it, with the given lifetimes in
// seconds (0 = forever).
func (c *Conn) ReplaceAddr(index int, p netip.Prefix, valid, preferred uint32) error {
	fam := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1] = fam, uint8(p.Bits())
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	ae := netlink.NewAttributeEncoder()
	ip := p.Addr().AsSlice()
	ae.Bytes(unix.IFA_LOCAL, ip)
	ae.Bytes(unix.IFA_ADDRESS, ip)
	if p.Addr().Is4() && p.Bits() < 31 {
		ae.Bytes(unix.IFA_BROADCAST, broadcast(p))
	}
	if valid != 0 {
		ci := make([]byte, 16)
		binary.NativeEndian.PutUint32(ci[0:4], preferred)
		binary.NativeEndian.PutUint32(ci[4:8], valid)
		ae.Bytes(unix.IFA_CACHEINFO, ci)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = c.raw.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWADDR, Flags: netlink.Request | netlink.Create | netlink.Replace | netlink.Acknowledge},
		Data:   append(b, attrs...),
	})
	if err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	return nil
}

func broadcast(p netip.Prefix) []byte {
	ip := p.Masked().Addr().As4()
	m := net.CIDRMask(p.Bits(), 32)
	for i := range ip {
		ip[i] |= ^m[i]
	}
	return ip[:]
}

// DelAddr removes p from a link.
func (c *Conn) DelAddr(index int, p netip.Prefix) error {
	fam := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	err := c.rt.Address.Delete(&rtnetlink.AddressMessage{
		Family: fam, PrefixLength: uint8(p.Bits()), Index: uint32(index),
		Attributes: &rtnetlink.AddressAttributes{Address: p.Addr().AsSlice(), Local: p.Addr().AsSlice()},
	})
	if err != nil {
		return fmt.Errorf("remove address %s: %w", p, err)
	}
	return nil
}

// Routes lists the unicast routes of the main table.
func (c *Conn) Routes() ([]Route, error) {
	rs, err := c.rt.Route.List()
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []Route
	for _, r := range rs {
		if r.Type != unix.RTN_UNICAST || (r.Table != unix.RT_TABLE_MAIN && r.Attributes.Table != unix.RT_TABLE_MAIN) {
			continue
		}
		var dst netip.Addr
		if r.Attributes.Dst != nil {
			dst, _ = netip.AddrFromSlice(r.Attributes.Dst)
		} else if r.Family == unix.AF_INET6 {
			dst = netip.IPv6Unspecified()
		} else {
			dst = netip.IPv4Unspecified()
		}
		pfx := netip.PrefixFrom(dst.Unmap(), int(r.DstLength))
		if len(r.Attributes.Multipath) > 0 {
			// One route of several next hops (IPv6 merges the routes
			// appended to one destination and metric, whichever the
			// link): a Route each, as the kernel takes them one by one.
			for _, nh := range r.Attributes.Multipath {
				gw, _ := netip.AddrFromSlice(nh.Gateway)
				out = append(out, Route{
					Dst: pfx, Gateway: gw.Unmap(),
					Index: int(nh.Hop.IfIndex), Priority: r.Attributes.Priority, Protocol: r.Protocol,
				})
			}
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Attributes.Gateway)
		out = append(out, Route{
			Dst: pfx, Gateway: gw.Unmap(),
			Index: int(r.Attributes.OutIface), Priority: r.Attributes.Priority, Protocol: r.Protocol,
		})
	}
	return out, nil
}

func routeMsg(r Route) *rtnetlink.RouteMessage {
	fam := uint8(unix.AF_INET)
	if r.Dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	m := &rtnetlink.RouteMessage{
		Family: fam, DstLength: uint8(r.Dst.Bits()), Table: unix.RT_TABLE_MAIN,
		Protocol: r.Protocol, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{OutIface: uint32(r.Index), Priority: r.Priority},
	}
	if m.Protocol == 0 {
		m.Protocol = unix.RTPROT_STATIC
	}
	if r.Dst.Bits() > 0 {
		m.Attributes.Dst = r.Dst.Masked().Addr().AsSlice()
	}
	if r.Gateway.IsValid() {
		m.Attributes.Gateway = r.Gateway.AsSlice()
	} else {
		m.Scope = unix.RT_SCOPE_LINK
	}
	return m
}

// AddRoute adds r (failing if an equal route exists).
func (c *Conn) AddRoute(r Route) error {
	if err := c.rt.Route.Add(routeMsg(r)); err != nil {
		return fmt.Errorf("add route %s via %s: %w", r.Dst, r.Gateway, err)
	}
	return nil
}

// ReplaceRoute adds r or replaces the route to the same destination and
// metric.
func (c *Conn) ReplaceRoute(r Route) error {
	if err := c.rt.Route.Replace(routeMsg(r)); err != nil {
		return fmt.Errorf("replace route %s via %s: %w", r.Dst, r.Gateway, err)
	}
	return nil
}

// AppendRoute adds r beside the routes to the same destination and metric
// (`ip route append`, NLM_F_APPEND, as NetworkManager adds them): a route of
// another link at that destination and metric stays. It fails with EEXIST
// only for a route equal to r.
func (c *Conn) AppendRoute(r Route) error {
	b, err := routeMsg(r).MarshalBinary()
	if err != nil {
		return fmt.Errorf("append route %s via %s: %w", r.Dst, r.Gateway, err)
	}
	_, err = c.raw.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.Request | netlink.Create | netlink.Append | netlink.Acknowledge},
		Data:   b,
	})
	if err != nil {
		return fmt.Errorf("append route %s via %s: %w", r.Dst, r.Gateway, err)
	}
	return nil
}

// PutRoute makes r the route of its link (r.Index) to r.Dst at r.Priority
// without touching another link's routes: it appends r (AppendRoute), then
// removes the link's other routes to that destination and metric (another
// gateway), which it returns. ReplaceRoute would replace the first route to
// the destination and metric, whichever its link: a DHCP client's default
// route on eth0 would become eth1's. have is the main table as Routes
// listed it (nil: PutRoute lists it).
func (c *Conn) PutRoute(r Route, have []Route) (removed []Route, err error) {
	if have == nil {
		if have, err = c.Routes(); err != nil {
			return nil, err
		}
	}
	same := func(x Route) bool { return x.Index == r.Index && x.Dst == r.Dst && x.Priority == r.Priority }
	if !slices.ContainsFunc(have, func(x Route) bool { return same(x) && x.Gateway == r.Gateway }) {
		if err := c.AppendRoute(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, err
		}
	}
	for _, x := range have {
		if !same(x) || x.Gateway == r.Gateway {
			continue
		}
		// Any protocol: a multipath route's dump carries one protocol
		// for its next hops (the first's), and a next hop's own may be
		// another; destination, gateway, link and metric name it.
		m := routeMsg(x)
		m.Protocol = 0
		if err := c.rt.Route.Delete(m); errors.Is(err, unix.ESRCH) {
			continue
		} else if err != nil {
			return removed, fmt.Errorf("remove route %s via %s: %w", x.Dst, x.Gateway, err)
		}
		removed = append(removed, x)
	}
	return removed, nil
}

// DelRoute removes r.
func (c *Conn) DelRoute(r Route) error {
	if err := c.rt.Route.Delete(routeMsg(r)); err != nil {
		return fmt.Errorf("remove route %s via %s: %w", r.Dst, r.Gateway, err)
	}
	return nil
}

// AddrWatch is a subscription to IPv4/IPv6 address notifications.
type AddrWatch struct{ c *netlink.Conn }

// WatchAddrs subscribes to address notifications.
func WatchAddrs() (*AddrWatch, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR})
	if err != nil {
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	return &AddrWatch{c: c}, nil
}

// Close ends the subscription (and any waiting Next).
func (w *AddrWatch) Close() error { return w.c.Close() }

// WaitNew blocks until a global IPv4 address is added or refreshed on link
// index, or w is closed. (IPv6 link-local churn after a flap is not a lease.)
func (w *AddrWatch) WaitNew(index int) error {
	for {
		msgs, err := w.c.Receive()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
				continue
			}
			if m.Data[0] == unix.AF_INET && m.Data[3] == unix.RT_SCOPE_UNIVERSE && int(binary.NativeEndian.Uint32(m.Data[4:8])) == index {
				return nil
			}
		}
	}
}
