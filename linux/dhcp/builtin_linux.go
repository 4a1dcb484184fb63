package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/nl"
	"golang.org/x/sys/unix"
)

// builtinLease is what the built-in client put on an interface, so that a
// renewal replaces exactly that and nothing else.
type builtinLease struct {
	Address string   `json:"address"`
	Routes  []bRoute `json:"routes,omitempty"`
	// Server is the server identifier of the lease: where a RENEW goes.
	Server  string `json:"server,omitempty"`
	Expires string `json:"expires"`
}

type bRoute struct {
	To  string `json:"to"`
	Via string `json:"via"`
}

const stateFile = "dhcp-builtin.json"

func (r *Renewer) loadState() map[string]builtinLease {
	st := map[string]builtinLease{}
	if r.o.StateDir == "" {
		return st
	}
	b, err := os.ReadFile(filepath.Join(r.o.StateDir, stateFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("read DHCP state; starting empty", "err", err)
		}
		return st
	}
	if err := json.Unmarshal(b, &st); err != nil {
		r.log.Warn("parse DHCP state; starting empty", "err", err)
	}
	return st
}

func (r *Renewer) saveState(st map[string]builtinLease) error {
	if r.o.StateDir == "" {
		return nil
	}
	return fsx.WriteJSON(filepath.Join(r.o.StateDir, stateFile), st)
}

// renewBuiltin runs a full DORA exchange (a re-mapped network must get its
// new address, so no INIT-REBOOT shortcut) and applies the lease.
func (r *Renewer) renewBuiltin(ctx context.Context, c *nl.Conn, link nl.Link, host hostName) error {
	if !link.Up {
		if err := c.SetUp(link.Index); err != nil {
			return fmt.Errorf("bring %s up: %w", link.Name, err)
		}
	}
	ack, err := r.exchange(ctx, link.Name, host)
	var nak *nclient4.ErrNak
	if errors.As(err, &nak) {
		// The server refused the address it had just offered (another
		// server's offer, or a reservation changed in between): whatever
		// this client held is void too. Start over once.
		r.log.Info("DHCP request refused (NAK); starting over with DISCOVER", "interface", link.Name, "err", err)
		r.dropBuiltin(c, link)
		ack, err = r.exchange(ctx, link.Name, host)
	}
	if err != nil {
		return err
	}
	return r.applyBuiltin(c, link, ack)
}

// renewBuiltinT1 is the built-in client's renewal at T1: a RENEW (RFC 2131
// 4.3.2: a REQUEST with ciaddr, unicast to the server that granted the
// lease). An ACK extends the lease in place. A NAK means the address is no
// longer this client's (the network was re-mapped under it): the address
// and the routes the lease installed are removed and DHCP starts over with
// DISCOVER. No answer (the server gone, moved) also falls back to DISCOVER,
// keeping the address until a new lease replaces it.
func (r *Renewer) renewBuiltinT1(ctx context.Context, c *nl.Conn, link nl.Link, host hostName) error {
	held := r.loadState()[link.Name]
	addr, err1 := netip.ParsePrefix(held.Address)
	server, err2 := netip.ParseAddr(held.Server)
	if err1 != nil || err2 != nil || !link.Up {
		return r.renewBuiltin(ctx, c, link, host)
	}
	ack, err := r.renewRequest(ctx, link.Name, addr.Addr(), server, host)
	var nak *nclient4.ErrNak
	switch {
	case err == nil:
		return r.applyBuiltin(c, link, ack)
	case errors.As(err, &nak):
		r.log.Info("DHCP renewal refused (NAK): dropping the lease and starting over with DISCOVER", "interface", link.Name, "addr", addr, "err", err)
		r.dropBuiltin(c, link)
	case ctx.Err() != nil:
		return err
	default:
		r.log.Info("DHCP renewal unanswered: starting over with DISCOVER", "interface", link.Name, "addr", addr, "err", err)
	}
	return r.renewBuiltin(ctx, c, link, host)
}

// renewRequest sends the RENEW of addr to server and returns its ACK, or
// an *nclient4.ErrNak.
func (r *Renewer) renewRequest(ctx context.Context, iface string, addr, server netip.Addr, host hostName) (*dhcpv4.DHCPv4, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	conn, err := renewConn(ctx, iface)
	if err != nil {
		return nil, fmt.Errorf("open DHCP socket on %s: %w", iface, err)
	}
	cl, err := nclient4.NewWithConn(conn, ifc.HardwareAddr, nclient4.WithTimeout(time.Second), nclient4.WithRetry(3),
		nclient4.WithServerAddr(&net.UDPAddr{IP: server.AsSlice(), Port: nclient4.ServerPort}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open DHCP socket on %s: %w", iface, err)
	}
	defer cl.Close()
	mods := append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(cl.InterfaceAddr()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(addr.AsSlice()),
		dhcpv4.WithBroadcast(false),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
		dhcpv4.WithRequestedOptions(requested...),
	}, host.modifiers()...)
	req, err := dhcpv4.New(mods...)
	if err != nil {
		return nil, fmt.Errorf("DHCP renewal on %s: %w", iface, err)
	}
	resp, err := cl.SendAndRead(ctx, cl.RemoteAddr(), req, nclient4.IsAll(
		nclient4.IsCorrectServer(server.AsSlice()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, fmt.Errorf("DHCP renewal on %s: %w", iface, err)
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("DHCP renewal of %s on %s: %w", addr, iface, &nclient4.ErrNak{Nak: resp})
	}
	return resp, nil
}

// renewConn is the socket of a RENEW: UDP port 68 of every address, bound
// to the interface. The kernel sends from the leased address (a source of
// 0.0.0.0, as the raw socket of DISCOVER sends, is a martian to a unicast
// destination and dropped), and it receives both the unicast ACK and a
// broadcast NAK (dnsmasq broadcasts its NAKs).
func renewConn(ctx context.Context, iface string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.BindToDevice(int(fd), iface); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(ctx, "udp4", ":68")
}

// requested are the options the built-in client asks for; T1 (58) among
// them, when its renewal is due (a server such as dnsmasq sends an option
// it was configured with only when asked).
var requested = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName, dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
}

// dropBuiltin removes what the built-in client's lease on link put there
// (its address and the routes it installed) and forgets the lease.
func (r *Renewer) dropBuiltin(c *nl.Conn, link nl.Link) {
	st := r.loadState()
	old, ok := st[link.Name]
	if !ok {
		return
	}
	for _, rt := range old.Routes {
		dst, err1 := netip.ParsePrefix(rt.To)
		gw, _ := netip.ParseAddr(rt.Via) // "invalid IP": an on-link route
		if err1 != nil {
			continue
		}
		if err := c.DelRoute(nl.Route{Dst: dst, Gateway: gw, Index: link.Index, Protocol: 16}); err != nil && !errors.Is(err, syscall.ESRCH) {
			r.log.Warn("remove a route of the refused lease", "interface", link.Name, "addr", rt.To, "err", err)
		}
	}
	if p, err := netip.ParsePrefix(old.Address); err == nil {
		if err := c.DelAddr(link.Index, p); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			r.log.Warn("remove the refused lease's address", "interface", link.Name, "addr", p, "err", err)
		}
	}
	delete(st, link.Name)
	if err := r.saveState(st); err != nil {
		r.log.Warn("record the built-in client's lease", "err", err)
	}
	r.log.Info("built-in DHCP lease dropped", "interface", link.Name, "addr", old.Address)
}

// applyBuiltin puts ack's lease on link: the address with the lease's
// lifetime, the default route or the classless static routes (option 121,
// which takes precedence per RFC 3442), replacing what the previous lease
// put there; then it records the lease and schedules its renewal at T1.
func (r *Renewer) applyBuiltin(c *nl.Conn, link nl.Link, ack *dhcpv4.DHCPv4) error {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return fmt.Errorf("DHCP ACK without an address")
	}
	mask := ack.SubnetMask()
	bits := 24
	if mask != nil {
		bits, _ = net.IPMask(mask).Size()
	}
	pfx := netip.PrefixFrom(ip, bits)
	lt, t1 := leaseTimes(ack)
	valid := uint32(min(lt/time.Second, 0xffffffff)) // 0xffffffff: infinite, as in DHCP

	st := r.loadState()
	old := st[link.Name]
	if old.Address != "" && old.Address != pfx.String() {
		if p, err := netip.ParsePrefix(old.Address); err == nil {
			if err := c.DelAddr(link.Index, p); err != nil {
				r.log.Warn("remove the previous lease's address", "interface", link.Name, "addr", p, "err", err)
			}
		}
	}
	if err := c.ReplaceAddr(link.Index, pfx, valid, valid); err != nil {
		return err
	}
	var routes []nl.Route
	if cs := ack.ClasslessStaticRoute(); len(cs) > 0 {
		for _, rt := range cs {
			dst, _ := netip.AddrFromSlice(rt.Dest.IP.To4())
			ones, _ := rt.Dest.Mask.Size()
			gw, _ := netip.AddrFromSlice(rt.Router.To4())
			if gw.IsUnspecified() {
				gw = netip.Addr{}
			}
			routes = append(routes, nl.Route{Dst: netip.PrefixFrom(dst, ones), Gateway: gw, Index: link.Index, Protocol: 16 /* RTPROT_DHCP */})
		}
	} else if rs := ack.Router(); len(rs) > 0 {
		gw, _ := netip.AddrFromSlice(rs[0].To4())
		routes = append(routes, nl.Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: gw, Index: link.Index, Protocol: 16})
	}
	// Each route is put beside another link's to the same network and
	// metric (a static gateway4 on eth1 beside this lease's default
	// route): a replace would take the first of them, whichever the link,
	// and the agent's next apply would take it back (nl.PutRoute).
	var recorded []bRoute
	have, err := c.Routes()
	if err != nil {
		r.log.Warn("list routes", "interface", link.Name, "err", err)
	}
	for _, rt := range routes {
		if _, err := c.PutRoute(rt, have); err != nil {
			r.log.Warn("install DHCP route", "interface", link.Name, "err", err)
			continue
		}
		recorded = append(recorded, bRoute{To: rt.Dst.String(), Via: rt.Gateway.String()})
	}
	// A route of the previous lease that this one does not have (another
	// gateway) goes with it.
	for _, o := range old.Routes {
		if slices.Contains(recorded, o) {
			continue
		}
		dst, err := netip.ParsePrefix(o.To)
		if err != nil {
			continue
		}
		gw, _ := netip.ParseAddr(o.Via)
		if err := c.DelRoute(nl.Route{Dst: dst, Gateway: gw, Index: link.Index, Protocol: 16}); err != nil && !errors.Is(err, syscall.ESRCH) {
			r.log.Warn("remove a route of the previous lease", "interface", link.Name, "addr", o.To, "err", err)
		}
	}
	st[link.Name] = builtinLease{Address: pfx.String(), Routes: recorded, Server: serverID(ack), Expires: time.Now().Add(lt).UTC().Format(time.RFC3339)}
	if err := r.saveState(st); err != nil {
		r.log.Warn("record the built-in client's lease", "err", err)
	}
	r.log.Info("built-in DHCP lease applied", "interface", link.Name, "addr", pfx, "server", serverID(ack), "lease", lt)
	r.scheduleRenewal(link.Name, t1, lt)
	return nil
}

// minLease is the shortest lease the built-in client takes (dhcpcd's
// DHCP_MIN_LEASE; udhcpc takes 16 s): a lease of 0 s (or 1) put the
// address on for a second and renewed at once, ACK after ACK, with no
// pause.
const minLease = 20 * time.Second

// leaseTimes are ack's lease time (option 51, an hour if absent, at least
// minLease; 0xffffffff is infinite, RFC 2131 3.3) and T1 (option 58, half
// the lease if absent or not shorter than the lease, RFC 2131 4.4.5).
func leaseTimes(ack *dhcpv4.DHCPv4) (lease, t1 time.Duration) {
	lease = max(ack.IPAddressLeaseTime(time.Hour), minLease)
	t1 = ack.IPAddressRenewalTime(lease / 2)
	if t1 <= 0 || t1 >= lease {
		t1 = lease / 2
	}
	return lease, t1
}

// scheduleRenewal keeps a built-in lease alive: nobody else will renew it,
// and the address goes when its lifetime ends. It renews at T1; a failed
// renewal is retried with jittered exponential backoff (10 s doubling, capped
// at 5 min) until it succeeds; a flap's renewal replaces the timer.
func (r *Renewer) scheduleRenewal(iface string, t1, lease time.Duration) {
	if t1 <= 0 || t1 > lease {
		t1 = lease / 2
	}
	r.timersMu.Lock()
	defer r.timersMu.Unlock()
	if r.timers == nil {
		r.timers = map[string]*time.Timer{}
	}
	if old := r.timers[iface]; old != nil {
		old.Stop()
	}
	var fire func(backoff time.Duration)
	fire = func(backoff time.Duration) {
		_, err := r.renew(context.Background(), iface, true)
		if err == nil {
			return // applyBuiltin scheduled the next one
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		r.log.Warn("scheduled DHCP renewal failed; retrying", "interface", iface, "in", wait, "err", err)
		r.timersMu.Lock()
		r.timers[iface] = time.AfterFunc(wait, func() { fire(min(backoff*2, 5*time.Minute)) })
		r.timersMu.Unlock()
	}
	r.timers[iface] = time.AfterFunc(t1, func() { fire(10 * time.Second) })
}

// exchange runs DORA, sending host's name, and returns the ACK (or an
// error wrapping *nclient4.ErrNak), retrying a few times (with jittered,
// capped backoff) when the link refuses the packet: right after a bounce
// the carrier can go again mid-send (ENOBUFS, ENETDOWN).
func (r *Renewer) exchange(ctx context.Context, iface string, host hostName) (*dhcpv4.DHCPv4, error) {
	delay := 100 * time.Millisecond
	var last error
	mods := append([]dhcpv4.Modifier{dhcpv4.WithRequestedOptions(requested...)}, host.modifiers()...)
	for attempt := 1; attempt <= 4; attempt++ {
		cl, err := nclient4.New(iface, nclient4.WithTimeout(time.Second), nclient4.WithRetry(4))
		if err != nil {
			return nil, fmt.Errorf("open DHCP socket on %s: %w", iface, err)
		}
		lease, err := cl.Request(ctx, mods...)
		cl.Close()
		if err == nil {
			return lease.ACK, nil
		}
		last = fmt.Errorf("DHCP exchange on %s: %w", iface, err)
		if ctx.Err() != nil || !(errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENETDOWN) || strings.Contains(err.Error(), "no buffer space")) {
			return nil, last
		}
		r.log.Info("DHCP exchange failed; retrying", "interface", iface, "attempt", attempt, "err", err)
		wait := delay/2 + time.Duration(rand.Int64N(int64(delay)))
		select {
		case <-ctx.Done():
			return nil, last
		case <-time.After(wait):
		}
		delay = min(delay*2, time.Second)
	}
	return nil, last
}

func serverID(ack *dhcpv4.DHCPv4) string {
	if s := ack.ServerIdentifier(); s != nil {
		return s.String()
	}
	return ""
}
