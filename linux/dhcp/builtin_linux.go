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
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/nl"
)

// builtinLease is what the built-in client put on an interface, so that a
// renewal replaces exactly that and nothing else.
type builtinLease struct {
	Address string   `json:"address"`
	Routes  []bRoute `json:"routes,omitempty"`
	Expires string   `json:"expires"`
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
// new address, so no INIT-REBOOT shortcut) and applies the lease: the
// address with the lease's lifetime, the default route or the classless
// static routes (option 121, which takes precedence per RFC 3442).
func (r *Renewer) renewBuiltin(ctx context.Context, c *nl.Conn, link nl.Link) error {
	if !link.Up {
		if err := c.SetUp(link.Index); err != nil {
			return fmt.Errorf("bring %s up: %w", link.Name, err)
		}
	}
	lease, err := r.exchange(ctx, link.Name)
	if err != nil {
		return err
	}
	ack := lease.ACK
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
	lt := ack.IPAddressLeaseTime(time.Hour)
	valid := uint32(lt / time.Second)
	if valid == 0 {
		valid = 1
	}

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
	var recorded []bRoute
	for _, rt := range routes {
		if err := c.ReplaceRoute(rt); err != nil {
			r.log.Warn("install DHCP route", "interface", link.Name, "err", err)
			continue
		}
		recorded = append(recorded, bRoute{To: rt.Dst.String(), Via: rt.Gateway.String()})
	}
	st[link.Name] = builtinLease{Address: pfx.String(), Routes: recorded, Expires: time.Now().Add(lt).UTC().Format(time.RFC3339)}
	if err := r.saveState(st); err != nil {
		r.log.Warn("record the built-in client's lease", "err", err)
	}
	r.log.Info("built-in DHCP lease applied", "interface", link.Name, "addr", pfx, "server", serverID(ack), "lease", lt)
	r.scheduleRenewal(link.Name, ack.IPAddressRenewalTime(lt/2), lt)
	return nil
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
		_, err := r.RenewDHCP(context.Background(), iface)
		if err == nil {
			return // renewBuiltin scheduled the next one
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		r.log.Warn("scheduled DHCP renewal failed; retrying", "interface", iface, "in", wait, "err", err)
		r.timersMu.Lock()
		r.timers[iface] = time.AfterFunc(wait, func() { fire(min(backoff*2, 5*time.Minute)) })
		r.timersMu.Unlock()
	}
	r.timers[iface] = time.AfterFunc(t1, func() { fire(10 * time.Second) })
}

// exchange runs DORA, retrying a few times (with jittered, capped backoff)
// when the link refuses the packet: right after a bounce the carrier can go
// again mid-send (ENOBUFS, ENETDOWN).
func (r *Renewer) exchange(ctx context.Context, iface string) (*nclient4.Lease, error) {
	delay := 100 * time.Millisecond
	var last error
	for attempt := 1; attempt <= 4; attempt++ {
		cl, err := nclient4.New(iface, nclient4.WithTimeout(time.Second), nclient4.WithRetry(4))
		if err != nil {
			return nil, fmt.Errorf("open DHCP socket on %s: %w", iface, err)
		}
		lease, err := cl.Request(ctx, dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionDomainName, dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionIPAddressLeaseTime))
		cl.Close()
		if err == nil {
			return lease, nil
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
