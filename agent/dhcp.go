package agent

import (
	"context"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// watchLinks renews the DHCP lease of an interface whose carrier came
// back. The carrier of a quiet link need only stay up for LinkSettle (a
// claim's NIC bounce is renewed at once); one that comes back again within
// LinkDebounce must stay up for LinkDebounce, each flap restarting the
// wait. A carrier lost before the wait ends cancels it. So a storm of flaps
// yields at most two renewals: one at its start, one once it settles.
func (a *Agent) watchLinks(ctx context.Context) {
	events, err := a.p.Links.WatchLinks(ctx)
	if err != nil {
		a.log.Warn("link watching unavailable: DHCP is renewed only when network.renewDhcp changes", "err", err)
		return
	}
	due := map[string]time.Time{}  // interface → when to renew
	back := map[string]time.Time{} // interface → when its carrier last came back
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	rearm := func() {
		timer.Stop()
		var first time.Time
		for _, t := range due {
			if first.IsZero() || t.Before(first) {
				first = t
			}
		}
		if !first.IsZero() {
			timer.Reset(time.Until(first))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			a.log.Debug("link event", "interface", ev.Interface, "kind", ev.Kind.String(), "carrierChanges", ev.CarrierChanges)
			switch ev.Kind {
			case CarrierBack, LinkAdded:
				now := time.Now()
				wait := a.opts.LinkSettle
				if now.Sub(back[ev.Interface]) < a.opts.LinkDebounce {
					wait = a.opts.LinkDebounce
				}
				back[ev.Interface] = now
				due[ev.Interface] = now.Add(wait)
			case CarrierLost:
				delete(due, ev.Interface)
			case LinkRemoved:
				delete(due, ev.Interface)
				delete(back, ev.Interface)
			}
			rearm()
		case <-timer.C:
			now := time.Now()
			for iface, t := range due {
				if !t.After(now) {
					delete(due, iface)
					a.renew(ctx, iface)
				}
			}
			rearm()
		}
	}
}

// renewAll renews DHCP on every DHCP-managed interface because
// network.renewDhcp changed to v, then records v as acted on. Only a
// renewal that happened is recorded: if the interfaces cannot be listed,
// or the agent stops first, v stays pending, and the next start (or the
// next document carrying v) renews again. A renewal of one interface that
// fails counts as done: it was attempted and reported to the IMDS.
func (a *Agent) renewAll(ctx context.Context, v int64) {
	a.platMu.Lock()
	ifaces, err := a.p.DHCP.DHCPInterfaces(ctx)
	a.platMu.Unlock()
	if err != nil {
		a.log.Warn("list DHCP interfaces: renewDhcp stays pending until the next start", "renewDhcp", v, "err", err)
		return
	}
	a.log.Info("renewDhcp changed: renewing DHCP", "renewDhcp", v, "interfaces", ifaces)
	for _, iface := range ifaces {
		if ctx.Err() != nil {
			return // still pending: the next start finishes it
		}
		a.renew(ctx, iface)
	}
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	a.st.RenewDHCP, a.st.PendingRenewDHCP = &v, nil
	if err := a.st.save(a.opts.StateDir); err != nil {
		a.log.Error("persist state", "err", err)
	}
	a.mu.Unlock()
}

// renew renews one interface's lease, reconnects to the IMDS and reports
// a dhcp-renewed event with the addresses the interface holds now (or the
// error, if the renewal failed).
func (a *Agent) renew(ctx context.Context, iface string) {
	t0 := time.Now()
	a.platMu.Lock()
	lease, err := a.p.DHCP.RenewDHCP(ctx, iface)
	a.platMu.Unlock()
	a.reconnect()
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	r := status.Report{State: a.curState, Generation: a.curGen, Event: status.EventDHCPRenewed, Interface: iface}
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("renew DHCP", "interface", iface, "err", err)
		r.Error = "renew DHCP on " + iface + ": " + err.Error()
	} else {
		a.log.Info("DHCP renewed", "interface", iface, "client", lease.Client, "addresses", lease.Addresses, "ms", time.Since(t0).Milliseconds())
		for _, p := range lease.Addresses {
			r.Addresses = append(r.Addresses, p.String())
		}
	}
	a.emit(r, nil)
}
