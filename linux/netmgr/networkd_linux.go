package netmgr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

const (
	nd        = "org.freedesktop.network1"
	ndPath    = dbus.ObjectPath("/org/freedesktop/network1")
	ndManager = nd + ".Manager"
	ndLink    = nd + ".Link"
)

// NetworkdOptions tune one networkd renewal.
type NetworkdOptions struct {
	// Reconfigure makes networkd reconfigure the link (Link.Reconfigure)
	// instead of renewing (Link.Renew): the way to make it send a host
	// name set since it configured the link.
	Reconfigure bool
}

// networkdLink is the part of Link.Describe's JSON that tells the lease.
type networkdLink struct {
	Index               int
	Name                string
	NetworkFile         string
	AdministrativeState string
	OperationalState    string
	MTU                 int
	Addresses           []struct {
		Family            int
		Address           []byte
		PrefixLength      int
		ValidLifetimeUsec uint64
		ConfigSource      string
		ConfigState       string
		ConfigProvider    []byte
	}
}

// networkdLease is the lease in a Describe: the DHCPv4 address networkd
// configured, and its lifetime end (CLOCK_BOOTTIME, µs), which every ACK
// moves.
type networkdLease struct {
	Lease
	validUsec uint64
}

func (d *networkdLink) lease() networkdLease {
	for _, a := range d.Addresses {
		if a.Family != unix.AF_INET || a.ConfigSource != "DHCPv4" || a.ConfigState != "configured" || len(a.Address) != 4 {
			continue
		}
		addr := netip.AddrFrom4([4]byte(a.Address))
		l := networkdLease{Lease: Lease{Manager: Networkd, Interface: d.Name, Address: netip.PrefixFrom(addr, a.PrefixLength)}, validUsec: a.ValidLifetimeUsec}
		if len(a.ConfigProvider) == 4 {
			l.Server = netip.AddrFrom4([4]byte(a.ConfigProvider))
		}
		if a.ValidLifetimeUsec != 0 && a.ValidLifetimeUsec != ^uint64(0) {
			var ts unix.Timespec
			if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
				now := uint64(ts.Nano() / 1000)
				l.Expires = time.Now().Add(time.Duration(int64(a.ValidLifetimeUsec)-int64(now)) * time.Microsecond)
			}
		}
		return l
	}
	return networkdLease{}
}

// networkdLinkPath finds iface's link object.
func (c *Conn) networkdLinkPath(ctx context.Context, iface string) (dbus.ObjectPath, error) {
	var idx int32
	var path dbus.ObjectPath
	err := c.bus.Object(nd, ndPath).CallWithContext(ctx, ndManager+".GetLinkByName", 0, iface).Store(&idx, &path)
	if err != nil {
		return "", wrap(Networkd, "Manager.GetLinkByName", iface, err)
	}
	return path, nil
}

func (c *Conn) describe(ctx context.Context, path dbus.ObjectPath, iface string) (*networkdLink, error) {
	var js string
	if err := c.bus.Object(nd, path).CallWithContext(ctx, ndLink+".Describe", 0).Store(&js); err != nil {
		return nil, wrap(Networkd, "Link.Describe", iface, err)
	}
	var d networkdLink
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		return nil, fmt.Errorf("%s Link.Describe %s: %w", Networkd, iface, err)
	}
	return &d, nil
}

// networkdLinkOf finds iface's link object and describes it.
func (c *Conn) networkdLinkOf(ctx context.Context, iface string) (dbus.ObjectPath, *networkdLink, error) {
	path, err := c.networkdLinkPath(ctx, iface)
	if err != nil {
		return "", nil, err
	}
	d, err := c.describe(ctx, path, iface)
	if err != nil {
		return "", nil, err
	}
	return path, d, nil
}

// NetworkdLease returns networkd's current DHCPv4 lease of iface (not
// Valid if it has none).
func (c *Conn) NetworkdLease(ctx context.Context, iface string) (Lease, error) {
	_, d, err := c.networkdLinkOf(ctx, iface)
	if err != nil {
		return Lease{}, err
	}
	return d.lease().Lease, nil
}

// infiniteRenewGrace is how long NetworkdRenew waits for an infinite
// lease to change (a DHCPNAK that moves the address) before it takes the
// accepted Renew for the renewal.
const infiniteRenewGrace = 2 * time.Second

// infinite reports whether l is a lease without an end: networkd's
// Describe (252) leaves ValidLifetimeUsec out for an infinite lifetime.
func (l networkdLease) infinite() bool {
	return l.Valid() && (l.validUsec == 0 || l.validUsec == ^uint64(0))
}

// renewal decides when a Link.Renew or Link.Reconfigure is done.
type renewal struct {
	old networkdLease
	// infinite: old is an infinite lease renewed by Link.Renew. An ACK
	// for it changes nothing networkd describes (the address and its
	// lifetime stay, and networkd 252 describes no lease time), so the
	// renewal is done once the grace has passed with the lease's address
	// still configured on a link networkd configures.
	infinite bool
	grace    time.Time
	// gone: the lease went meanwhile (a DHCPNAK, a Reconfigure's new
	// start); the next lease is the new one, even with the old address
	// and lifetime.
	gone bool
}

func (r *renewal) done(d *networkdLink, now time.Time) bool {
	got := d.lease()
	if !got.Valid() {
		r.gone = true
		return false
	}
	if r.gone || got.Address != r.old.Address || got.validUsec != r.old.validUsec {
		return true
	}
	// The link may stay "configuring" for another reason (networkd 252
	// after a Reconfigure, with the lease's address configured): only a
	// failed or given-up link is not one whose lease was kept.
	return r.infinite && !now.Before(r.grace) && (d.AdministrativeState == "configured" || d.AdministrativeState == "configuring")
}

// NetworkdRenew asks systemd-networkd to renew iface's DHCPv4 lease
// (Link.Renew, or Link.Reconfigure with o.Reconfigure) and returns the new
// lease once networkd reports it: a DHCPv4 address whose lifetime or
// address differs from the one before, or, for an infinite lease renewed
// by Link.Renew (whose ACK changes nothing networkd shows), the same lease
// still configured after infiniteRenewGrace. A refusal (an interface networkd
// does not manage, an unknown one) is an *Error with networkd's text; no
// new lease before ctx ends is ctx's error, with the link's last state.
func (c *Conn) NetworkdRenew(ctx context.Context, iface string, o NetworkdOptions) (Lease, error) {
	path, err := c.networkdLinkPath(ctx, iface)
	if err != nil {
		return Lease{}, err
	}
	sig, stop, err := c.watch(ctx, nd, path)
	if err != nil {
		return Lease{}, err
	}
	defer stop()
	before, err := c.describe(ctx, path, iface)
	if err != nil {
		return Lease{}, err
	}
	old := before.lease()
	method := "Link.Renew"
	if o.Reconfigure {
		method = "Link.Reconfigure"
	}
	if err := c.bus.Object(nd, path).CallWithContext(ctx, nd+"."+method, 0).Err; err != nil {
		return Lease{}, wrap(Networkd, method, iface, err)
	}
	var got networkdLease
	last := before
	r := renewal{old: old, infinite: !o.Reconfigure && old.infinite(), grace: time.Now().Add(infiniteRenewGrace)}
	err = await(ctx, sig, func(*dbus.Signal) (bool, error) {
		d, err := c.describe(ctx, path, iface)
		if err != nil {
			return false, err
		}
		last = d
		got = d.lease()
		return r.done(d, time.Now()), nil
	}, func() string {
		return fmt.Sprintf("%s %s %s: no new lease (link %s/%s, lease %v)", Networkd, method, iface, last.OperationalState, last.AdministrativeState, old.Address)
	})
	if err != nil {
		return Lease{}, err
	}
	return got.Lease, nil
}

// NetworkdForeign returns iface's global IPv4 addresses that networkd
// does not manage (ConfigSource "foreign": added by someone else, such as
// the agent's static network step). Link.Reconfigure drops those.
func (c *Conn) NetworkdForeign(ctx context.Context, iface string) ([]netip.Prefix, error) {
	_, d, err := c.networkdLinkOf(ctx, iface)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range d.Addresses {
		if a.Family == unix.AF_INET && a.ConfigSource == "foreign" && len(a.Address) == 4 {
			addr := netip.AddrFrom4([4]byte(a.Address))
			if addr.IsGlobalUnicast() {
				out = append(out, netip.PrefixFrom(addr, a.PrefixLength))
			}
		}
	}
	return out, nil
}
