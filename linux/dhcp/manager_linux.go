package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/prewarm/prewarm/linux/netmgr"
)

// renewManager renews iface's lease through systemd-networkd's or
// NetworkManager's D-Bus API (linux/netmgr): it returns when the manager
// reports the new lease, and a refusal carries the manager's error. The
// current host name goes with it.
//
// networkd renews by Link.Reconfigure, not Link.Renew: networkd (252) sends
// on a Renew the host name it read when it configured the link, and, in
// RENEWING, it listens on a socket bound to the leased address, so it
// never sees a server's broadcast NAK (dnsmasq's, for an address the
// server moved or a network that was re-mapped) and keeps the old address
// until T2. Reconfigure reads the host name again and starts over with
// DISCOVER, as the agent's renewals after a link event want; the address is
// dropped and leased again, the link stays up. It also drops the link's
// addresses networkd does not manage, so a link with any (the network
// step's static addresses) gets a plain Renew instead. NetworkManager's Reapply
// sets the host name as the applied connection's ipv4.dhcp-hostname and
// restarts its DHCP transaction, which handles a NAK.
//
// Only without a system bus (no socket: an image with the manager's
// daemon but no dbus) does it fall back to the command-line tools
// (fallback: networkctl renew / nmcli device up). The caller
// (renewAndWait) then also awaits the address update on the link: the
// lease the agent reports is read from the kernel.
func (r *Renewer) renewManager(ctx context.Context, client, iface string, host hostName, fallback func() error) error {
	c, err := netmgr.Dial(ctx)
	if errors.Is(err, netmgr.ErrNoBus) {
		r.log.Warn("no D-Bus system bus: renewing through the command-line tool", "interface", iface, "client", client, "err", err)
		return fallback()
	}
	if err != nil {
		return err
	}
	defer c.Close()
	var lease netmgr.Lease
	switch client {
	case Networkd:
		// Reconfigure would also drop the addresses networkd does not
		// manage (the network step's static ones): with any, a plain
		// Renew, which keeps them.
		var foreign []netip.Prefix
		if foreign, err = c.NetworkdForeign(ctx, iface); err != nil {
			return err
		}
		if len(foreign) > 0 {
			r.log.Info("renewing without reconfiguring: the link has addresses networkd does not manage, which a reconfigure drops (networkd then sends the host name it read when it configured the link)", "interface", iface, "addresses", fmt.Sprint(foreign))
		}
		lease, err = c.NetworkdRenew(ctx, iface, netmgr.NetworkdOptions{Reconfigure: len(foreign) == 0})
	case NetworkManager:
		lease, err = c.NMRenew(ctx, iface, netmgr.NMOptions{Hostname: host.Name()})
	}
	if err != nil {
		return err
	}
	r.log.Debug("the manager reports the new lease", "interface", iface, "client", client, "addr", lease.Address.String())
	return nil
}
