package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// The link events the agent reports (PROTOCOL.md section 4): carrier
// changes of managed interfaces and DHCP renewals. Each is kept in a ring
// of the latest status.MaxLinkEvents (State.LinkEvents), which every report
// carries, and each makes a report of its own, one line of the status log,
// with the event's kind as the report's event (a finished renewal is the
// dhcp-renewed report). A storm costs no flood: carrier changes of an
// interface while its renewal runs are merged into one entry (the latest
// state and counter, with how many were merged) that makes no report of
// its own: it enters the ring just before the renewal's end; and the
// reports are paced (linkpace.go), so flaps slower than a renewal do not
// make four reports each without end.

// addLinkEvent appends ev to the ring s keeps, dropping the oldest past
// status.MaxLinkEvents.
func (s *State) addLinkEvent(ev status.LinkEvent) {
	s.LinkEvents = append(s.LinkEvents, ev)
	if n := len(s.LinkEvents) - status.MaxLinkEvents; n > 0 {
		s.LinkEvents = append([]status.LinkEvent(nil), s.LinkEvents[n:]...)
	}
}

// carrierEvent records a carrier change ev: on its own, with a report, or,
// while a renewal of its interface runs, merged into the one entry of the
// changes during that renewal, recorded with the renewal's end.
func (a *Agent) carrierEvent(ctx context.Context, ev LinkEvent) {
	le := carrierLinkEvent(ev)
	a.linkMu.Lock()
	if lr := a.links[ev.Interface]; lr != nil && lr.running {
		lr.merge(le)
		a.linkMu.Unlock()
		return
	}
	a.linkMu.Unlock()
	a.log.Info("link event", "interface", ev.Interface, "kind", le.Kind, "carrierChanges", ev.CarrierChanges)
	a.linkReport(ctx, le, status.Report{Event: le.Kind, Interface: ev.Interface})
}

// carrierLinkEvent is the link event of the carrier change ev.
func carrierLinkEvent(ev LinkEvent) status.LinkEvent {
	kind := status.LinkCarrierLost
	if ev.Kind == CarrierBack {
		kind = status.LinkCarrierBack
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	return status.LinkEvent{Time: status.Time{Time: at}, Kind: kind, Interface: ev.Interface, CarrierChanges: ev.CarrierChanges}
}

// merge merges the carrier change le into the entry of the changes during
// lr's renewal (guarded by Agent.linkMu).
func (lr *linkRenewal) merge(le status.LinkEvent) {
	if lr.merged != nil {
		le.Coalesced = lr.merged.Coalesced
	}
	le.Coalesced++
	lr.merged = &le
}

// takeMerged returns and forgets the carrier changes merged during the
// renewal of iface that ends now (nil: none).
func (a *Agent) takeMerged(iface string) *status.LinkEvent {
	a.linkMu.Lock()
	defer a.linkMu.Unlock()
	lr := a.links[iface]
	if lr == nil {
		return nil
	}
	m := lr.merged
	lr.merged = nil
	return m
}

// dhcpClient is the DHCP client that will renew iface, when the platform
// can tell (DHCPClientNamer), else "".
func (a *Agent) dhcpClient(ctx context.Context, iface string) string {
	n, ok := a.p.DHCP.(DHCPClientNamer)
	if !ok {
		return ""
	}
	c, err := n.DHCPClient(ctx, iface)
	if err != nil {
		a.log.Debug("which DHCP client renews", "interface", iface, "err", err)
	}
	return c
}

// renewalStarted records that a renewal of iface by client started at at.
func (a *Agent) renewalStarted(ctx context.Context, iface, client string, at time.Time) {
	le := status.LinkEvent{Time: status.Time{Time: at}, Kind: status.LinkRenewing, Interface: iface, Client: client}
	a.linkReport(ctx, le, status.Report{Event: status.LinkRenewing, Interface: iface})
}

// renewalEvent is the link event of a finished renewal of iface that
// started at t0: the lease the platform returned, or its error.
func renewalEvent(iface string, t0 time.Time, lease Lease, err error) status.LinkEvent {
	le := status.LinkEvent{Time: status.Time{Time: time.Now()}, Kind: status.LinkRenewed, Interface: iface,
		Client: lease.Client, MS: time.Since(t0).Milliseconds(), OldAddresses: prefixStrings(lease.Previous)}
	if err != nil {
		le.Error = err.Error()
	} else {
		le.Addresses = prefixStrings(lease.Addresses)
	}
	return le
}

// linkReport records le in the ring and makes the event report r for it,
// with the state and generation of the last outcome; the ring and the
// report are persisted together. Past the budget of link-event reports
// (linkpace.go) le enters the ring without a report of its own.
func (a *Agent) linkReport(ctx context.Context, le status.LinkEvent, r status.Report) {
	a.mu.Lock()
	r.State, r.Generation = a.curState, a.curGen
	a.mu.Unlock()
	a.linkEmit(ctx, r, []status.LinkEvent{le}, false)
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
