package agent

import (
	"context"

	"github.com/prewarm/prewarm/shared/status"
)

// HostnamePublisher is a DHCPRenewer whose renewals send the current host
// name (Linux: linux/dhcp reads it from the kernel at each renewal). After
// the hostname step changed the name, the agent renews DHCP on every
// DHCP-managed interface, so the DHCP server, and the DNS it feeds, learns
// the claim's name: the renewal a link bounce started may have run before
// the step (they take turns on the platform), and without a bounce or a
// renewDhcp there is none. The interface is never taken down for it (the
// WALinuxAgent way of publishing a host name, which fails about one time
// in ten).
type HostnamePublisher interface {
	PublishesHostname() bool
}

// renewForHostname renews every DHCP interface when steps say the
// hostname step changed the name live (no restart needed for it, as a
// Windows rename does) and the platform's renewals carry it. Not recorded:
// an agent stopped before it leaves the old name with the DHCP server
// until the next renewal.
func (a *Agent) renewForHostname(ctx context.Context, steps []status.Step) {
	hp, ok := a.p.DHCP.(HostnamePublisher)
	if !ok || !hp.PublishesHostname() {
		return
	}
	changed := false
	for _, s := range steps {
		if s.Name == status.StepHostname && s.OK && s.Changed && !s.RebootRequired {
			changed = true
		}
	}
	if !changed {
		return
	}
	a.platMu.Lock()
	ifaces, err := a.p.DHCP.DHCPInterfaces(ctx)
	a.platMu.Unlock()
	if err != nil {
		a.log.Warn("list DHCP interfaces: the new host name reaches DHCP at the next renewal", "err", err)
		return
	}
	a.log.Info("host name changed: renewing DHCP to send it", "interfaces", ifaces)
	for _, iface := range ifaces {
		if ctx.Err() != nil {
			return
		}
		a.renew(ctx, iface)
	}
}
