package agent

import (
	"context"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// watchLinks renews the DHCP lease of an interface whose carrier came
// back, debounced by evidence, not by time. Every link event first cuts the
// IMDS requests in flight (their connection may be dead) and issues them
// again. A carrier that comes back starts a renewal at once; further
// carrier changes while it runs (a storm, or a bounce the kernel reported
// in two parts) are coalesced into one more renewal after it, and a repeat
// of the state the running renewal started from (the same carrier-change
// count) into none; changes during that extra renewal belong to the same
// storm and add nothing. So back-to-back bounces cost no fixed wait, and a
// storm costs two renewals: one at its first flap, one started after that
// one ended (a flap after the extra renewal ended starts anew).
func (a *Agent) watchLinks(ctx context.Context) {
	events, err := a.p.Links.WatchLinks(ctx)
	if err != nil {
		a.log.Warn("link watching unavailable: DHCP is renewed only when network.renewDhcp changes", "err", err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			// In hand: an outcome waits until the event is handled (and
			// for the renewal it starts); only then is the watcher told.
			// awaitRenewals asks the watcher first and looks at busy
			// after, so an event is always seen by one of the two.
			a.linkMu.Lock()
			if a.busy == 0 {
				a.idle = make(chan struct{})
			}
			a.busy++
			a.linkMu.Unlock()
			if ev.Handled != nil {
				ev.Handled()
			}
			a.log.Debug("link event", "interface", ev.Interface, "kind", ev.Kind.String(), "carrierChanges", ev.CarrierChanges)
			a.reconnect(false)
			switch ev.Kind {
			case CarrierLost:
				a.carrierEvent(ctx, ev)
			case CarrierBack:
				a.linkBack(ctx, ev) // records the event too
			}
			a.linkMu.Lock()
			if ev.Kind == CarrierLost {
				a.down[ev.Interface] = true
			} else {
				delete(a.down, ev.Interface)
			}
			close(a.linkSeen)
			a.linkSeen = make(chan struct{})
			a.busy--
			if a.busy == 0 {
				close(a.idle)
			}
			a.linkMu.Unlock()
		}
	}
}

// linkRenewal is the renewal state of one interface.
type linkRenewal struct {
	running bool   // a renewal runs (or waits for the platform)
	again   bool   // a change came while it ran: renew once more after it
	extra   bool   // the running renewal is that one more
	changes uint32 // the carrier-change count the latest renewal answers
	// merged is the link event that carrier changes during the renewal
	// merge into (linkevents.go), recorded when the renewal ends.
	merged *status.LinkEvent
}

// linkBack starts a renewal of ev's interface, or, while one runs, asks
// for one more after it if ev is news to it. It records ev: merged during
// a renewal, else reported by the renewal it starts (linkevents.go).
func (a *Agent) linkBack(ctx context.Context, ev LinkEvent) {
	le := carrierLinkEvent(ev)
	a.linkMu.Lock()
	defer a.linkMu.Unlock()
	lr := a.links[ev.Interface]
	if lr == nil {
		lr = &linkRenewal{}
		a.links[ev.Interface] = lr
	}
	if lr.running {
		lr.merge(le)
		// One extra renewal at most: changes during the extra one are
		// part of the same storm, which it was started to cover.
		if !lr.extra && (ev.CarrierChanges == 0 || ev.CarrierChanges != lr.changes) {
			lr.again, lr.changes = true, ev.CarrierChanges
		}
		return
	}
	lr.running, lr.changes = true, ev.CarrierChanges
	if a.busy == 0 {
		a.idle = make(chan struct{})
	}
	a.busy++
	a.bg.Go(func() {
		first := &le
		for {
			a.renewAfter(ctx, ev.Interface, first)
			first = nil
			a.linkMu.Lock()
			if lr.again && ctx.Err() == nil {
				lr.again, lr.extra = false, true
				a.linkMu.Unlock()
				continue
			}
			lr.running, lr.again, lr.extra = false, false, false
			// Changes merged after the renewal took them: on their own.
			left := lr.merged
			lr.merged = nil
			a.busy--
			if a.busy == 0 {
				close(a.idle)
			}
			a.linkMu.Unlock()
			if left != nil && ctx.Err() == nil {
				a.linkReport(ctx, *left, status.Report{Event: left.Kind, Interface: left.Interface})
			}
			return
		}
	})
}

// maxBehindWait bounds how long an outcome waits for a link that went down
// to come back, or for a link event the platform says is still to come
// (Linux sends one within about a second): a bounce is shorter; a link
// down for longer is unplugged, not bouncing.
const maxBehindWait = 5 * time.Second

// awaitRenewals waits until no renewal started by a link event runs or is
// queued, no managed link whose carrier was lost is still down, and no
// link change is still to be reported by the platform (LinkSettler): a NIC
// bounce that began before the outcome is renewed before it. A link that
// stays down, or a change never reported, holds the outcome back at most
// maxBehindWait. False if ctx ended first.
func (a *Agent) awaitRenewals(ctx context.Context) bool {
	logged := false
	var behindSince time.Time
	for {
		a.linkMu.Lock()
		idle, seen, down := a.idle, a.linkSeen, len(a.down) > 0
		a.linkMu.Unlock()
		select {
		case <-idle:
		default:
			if !logged {
				a.log.Info("outcome waits for the renewal of a link event")
				logged = true
			}
			select {
			case <-idle:
			case <-ctx.Done():
				return false
			}
			continue
		}
		behind := down
		if ls, ok := a.p.Links.(LinkSettler); ok && !behind {
			var err error
			if behind, err = ls.LinksBehind(ctx); err != nil {
				a.log.Warn("read link states", "err", err)
				return true
			}
		}
		if !behind {
			// An event the platform handed over while it listed the
			// links is the agent's now: busy, or its link down. Only
			// both looks together, settler first, leave no gap.
			a.linkMu.Lock()
			settled := a.busy == 0 && len(a.down) == 0
			a.linkMu.Unlock()
			if settled {
				return true
			}
			continue
		}
		if behindSince.IsZero() {
			behindSince = time.Now()
			a.log.Info("outcome waits for a link that is down or a link change not yet reported")
		}
		left := maxBehindWait - time.Since(behindSince)
		if left <= 0 {
			a.log.Warn("a link stayed down, or its change was not reported: reporting the outcome anyway", "after", maxBehindWait)
			return true
		}
		t := time.NewTimer(left)
		select {
		case <-seen:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
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
// a dhcp-renewing event, then a dhcp-renewed event with the addresses the
// interface holds now (or the error, if the renewal failed).
func (a *Agent) renew(ctx context.Context, iface string) { a.renewAfter(ctx, iface, nil) }

// renewAfter is renew of a renewal that the carrier change cause (if not
// nil) started: that event is reported first. The two reports are made
// while the renewal runs, so their writes do not delay it.
func (a *Agent) renewAfter(ctx context.Context, iface string, cause *status.LinkEvent) {
	causeDone, recorded := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(causeDone)
		if cause != nil {
			a.log.Info("link event", "interface", iface, "kind", cause.Kind, "carrierChanges", cause.CarrierChanges)
			a.linkReport(ctx, *cause, status.Report{Event: cause.Kind, Interface: iface})
		}
	}()
	a.platMu.Lock()
	// Which client renews is read here, when no other platform operation
	// runs (a renewal may restart a client), and reported meanwhile.
	t0 := time.Now()
	client := a.dhcpClient(ctx, iface)
	go func() {
		defer close(recorded)
		<-causeDone
		a.renewalStarted(ctx, iface, client, t0)
	}()
	lease, err := a.p.DHCP.RenewDHCP(ctx, iface)
	a.platMu.Unlock()
	<-recorded
	a.reconnect(true)
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
	le := renewalEvent(iface, t0, lease, err)
	evs := []status.LinkEvent{le}
	if merged := a.takeMerged(iface); merged != nil {
		evs = []status.LinkEvent{*merged, le}
	}
	a.linkEmit(ctx, r, evs, renewalNews(lease, err))
}
