package agent

import (
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
// state and counter, with how many were merged) and make no report; the
// renewal's own reports follow.

// addLinkEvent appends ev to the ring s keeps, dropping the oldest past
// status.MaxLinkEvents.
func (s *State) addLinkEvent(ev status.LinkEvent) {
	s.LinkEvents = append(s.LinkEvents, ev)
	if n := len(s.LinkEvents) - status.MaxLinkEvents; n > 0 {
		s.LinkEvents = append([]status.LinkEvent(nil), s.LinkEvents[n:]...)
	}
}

// mergeCarrier merges the carrier event ev into the ring's entry of its
// interface made since that interface's renewal started: the carrier entry
// already merged, else a new one after the renewal's start. It reports
// false when the ring holds no renewal start of the interface (the merge
// has nothing to attach to: ev is to be recorded on its own).
func (s *State) mergeCarrier(ev status.LinkEvent) bool {
	for i := len(s.LinkEvents) - 1; i >= 0; i-- {
		e := &s.LinkEvents[i]
		if e.Interface != ev.Interface {
			continue
		}
		switch e.Kind {
		case status.LinkRenewing:
			ev.Coalesced = 1
			s.addLinkEvent(ev)
			return true
		case status.LinkCarrierLost, status.LinkCarrierBack:
			if e.Coalesced == 0 {
				return false // recorded on its own: not a merge of this renewal
			}
			e.Kind, e.Time, e.CarrierChanges = ev.Kind, ev.Time, ev.CarrierChanges
			e.Coalesced++
			return true
		}
		return false
	}
	return false
}

// carrierEvent records a carrier change ev: on its own, with a report, or,
// while a renewal of its interface runs, merged into the ring.
func (a *Agent) carrierEvent(ev LinkEvent) {
	kind := status.LinkCarrierLost
	if ev.Kind == CarrierBack {
		kind = status.LinkCarrierBack
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	le := status.LinkEvent{Time: status.Time{Time: at}, Kind: kind, Interface: ev.Interface, CarrierChanges: ev.CarrierChanges}
	a.linkMu.Lock()
	lr := a.links[ev.Interface]
	renewing := lr != nil && lr.running
	a.linkMu.Unlock()
	if renewing {
		a.mu.Lock()
		merged := a.st.mergeCarrier(le)
		a.mu.Unlock()
		if merged {
			return
		}
	}
	a.log.Info("link event", "interface", ev.Interface, "kind", kind, "carrierChanges", ev.CarrierChanges)
	a.linkReport(le, status.Report{Event: kind, Interface: ev.Interface})
}

// renewalStarted records that a renewal of iface starts.
func (a *Agent) renewalStarted(iface string) {
	le := status.LinkEvent{Time: status.Time{Time: time.Now()}, Kind: status.LinkRenewing, Interface: iface}
	a.linkReport(le, status.Report{Event: status.LinkRenewing, Interface: iface})
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
// report are persisted together.
func (a *Agent) linkReport(le status.LinkEvent, r status.Report) {
	le.Error = truncate(a.red.String(le.Error), maxErrorBytes/4)
	a.mu.Lock()
	r.State, r.Generation = a.curState, a.curGen
	a.mu.Unlock()
	a.emit(r, func(s *State) { s.addLinkEvent(le) })
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
