package agent

import (
	"context"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// HostnamePublisher is a DHCPRenewer whose renewals send the current host
// name (Linux: linux/dhcp reads it from the kernel at each renewal). After
// the hostname step changed the name, the agent makes sure a renewal of
// every DHCP-managed interface runs after the step, so the DHCP server,
// and the DNS it feeds, learns the claim's name: the renewal of the
// claim's bounce does it when it runs after the step, but it may have run
// before (the two take turns on the platform), and without a bounce or a
// renewDhcp there is none. The interface is never taken down for it (the
// WALinuxAgent way of publishing a host name, which fails about one time
// in ten).
type HostnamePublisher interface {
	PublishesHostname() bool
}

// HostnameSender is a HostnamePublisher that can tell an interface whose
// client would not send the new name (a dhcpcd whose config has no
// "hostname", a udhcpc a supervisor runs with a fixed -x hostname:): the
// renewal for the name is skipped there, since it would send the old
// name and still cost what a renewal costs (udhcpc's releases and
// deconfigures the address).
type HostnameSender interface {
	SendsHostname(ctx context.Context, iface string) bool
}

// hostnameRenewalWait is how long after the outcome the agent waits for
// the claim's bounce before renewing for the host name itself: a pool
// publishes, then bounces the NIC, and that bounce's renewal sends the
// name; one of its own before it would make two. As long as the outcome
// waits for a link change not yet reported: a bounce is shorter.
const hostnameRenewalWait = maxBehindWait

// renewForHostname, when steps say the hostname step changed the name live
// (no restart needed for it, as a Windows rename does) and the platform's
// renewals carry it, renews every DHCP interface in the background after
// hostnameRenewalWait, except one that a renewal covered: one that
// finished after appliedAt (the end of the apply whose steps these are:
// the apply holds the platform throughout, so such a renewal ran after the
// step), or one running then. Not recorded: an agent stopped before it
// leaves the old name with the DHCP server until the next renewal.
func (a *Agent) renewForHostname(ctx context.Context, steps []status.Step, appliedAt time.Time) {
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
	a.bg.Go(func() {
		t := time.NewTimer(hostnameRenewalWait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.platMu.Lock()
		ifaces, err := a.p.DHCP.DHCPInterfaces(ctx)
		a.platMu.Unlock()
		if err != nil {
			a.log.Warn("list DHCP interfaces: the new host name reaches DHCP at the next renewal", "err", err)
			return
		}
		for _, iface := range ifaces {
			if ctx.Err() != nil {
				return
			}
			if a.renewedSince(iface, appliedAt) {
				a.log.Info("host name changed: a renewal after the step sent it", "interface", iface)
				continue
			}
			if hs, ok := a.p.DHCP.(HostnameSender); ok {
				a.platMu.Lock()
				sends := hs.SendsHostname(ctx, iface)
				a.platMu.Unlock()
				if !sends {
					a.log.Info("host name changed: the interface's DHCP client would not send it; no renewal", "interface", iface)
					continue
				}
			}
			a.log.Info("host name changed: renewing DHCP to send it", "interface", iface)
			a.renew(ctx, iface)
		}
	})
}

// renewedSince reports whether a renewal of iface finished (without error)
// after t, or one started by a link event runs now.
func (a *Agent) renewedSince(iface string, t time.Time) bool {
	a.linkMu.Lock()
	lr := a.links[iface]
	running := lr != nil && lr.running
	a.linkMu.Unlock()
	if running {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.st.LinkEvents {
		if e.Interface == iface && e.Kind == status.LinkRenewed && e.Error == "" && e.Time.After(t) {
			return true
		}
	}
	return false
}
