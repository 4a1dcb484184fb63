package agent

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// Link-event reports are paced. A link that flaps slower than its renewal
// takes (a bad cable, a host that keeps re-plugging the NIC) makes four
// reports a flap (carrier lost, carrier back, renewal started, finished),
// and the IMDS keeps only the latest api.MaxStatusHistory reports of an
// instance: an hour of such a storm would push the generation's outcome
// (its steps, error and SSH host keys) out of the history that `prewarm-imds
// status`, `known-hosts` and a pool's wait read, and fill the durable queue
// while the IMDS is unreachable. So a burst of linkReportBurst event
// reports goes at once, then one per linkReportEvery. An event past the
// budget still enters the ring (State.LinkEvents) without a report of its
// own: the next report carries it, and the pacer makes the report of the
// latest event held back as soon as the budget allows, so none stays
// unreported longer than linkReportEvery. When the link goes quiet
// (linkReportQuiet without a new event) the held report goes at once, on
// one token of credit that the budget pays back before the next: the end
// of a storm (the renewal after the link settled) reaches the IMDS within
// seconds, while a storm that never settles still makes one report per
// linkReportEvery. A finished renewal that failed or
// changed the interface's addresses is always reported: a pool waits for
// the guest's report of its tenant address.
const (
	linkReportBurst = 16
	linkReportEvery = time.Minute
	linkReportQuiet = 2 * time.Second
)

// linkPacer is the budget of link-event reports: a token bucket of burst
// tokens, one more every every.
type linkPacer struct {
	burst int
	every time.Duration
	quiet time.Duration

	mu     sync.Mutex
	tokens float64
	last   time.Time
	// held is the report of the latest event held back, nil if none;
	// flushing says a goroutine waits to make it.
	held     *status.Report
	heldAt   time.Time
	flushing bool
}

// refill adds the tokens earned since the last call (guarded by mu).
func (p *linkPacer) refill(now time.Time) {
	if p.last.IsZero() {
		p.tokens = float64(p.burst)
	} else if d := now.Sub(p.last); d > 0 {
		p.tokens = min(float64(p.burst), p.tokens+float64(d)/float64(p.every))
	}
	p.last = now
}

// take reports whether a report may go now, taking its token; a forced
// one goes anyway, taking a token if there is one (guarded by mu).
func (p *linkPacer) take(now time.Time, force bool) bool {
	p.refill(now)
	if p.tokens >= 1 {
		p.tokens--
		return true
	}
	return force
}

// wait is how long until a token is there, or until the link has been
// quiet long enough for the held report to go on credit (guarded by mu).
func (p *linkPacer) wait(now time.Time) time.Duration {
	p.refill(now)
	if p.tokens >= 1 {
		return 0
	}
	d := time.Duration((1 - p.tokens) * float64(p.every))
	if p.tokens >= 0 && p.quiet > 0 {
		d = min(d, max(0, p.heldAt.Add(p.quiet).Sub(now)))
	}
	return d
}

// takeQuiet reports whether the held report may go on credit: the link
// has been quiet since it was held, and no credit is outstanding (the
// balance is not below zero); it takes the token, leaving at most one
// owed (guarded by mu).
func (p *linkPacer) takeQuiet(now time.Time) bool {
	p.refill(now)
	if p.quiet <= 0 || p.tokens < 0 || now.Sub(p.heldAt) < p.quiet {
		return false
	}
	p.tokens--
	return true
}

// linkEmit makes the event report r and records evs (their errors
// redacted and bounded) in the ring with it,
// or, past the budget (unless force), records evs without a report and
// has the latest event held back reported once the budget allows.
func (a *Agent) linkEmit(ctx context.Context, r status.Report, evs []status.LinkEvent, force bool) {
	// Every report carries the ring: an error in it is redacted and
	// bounded as a report's own, or one long renewal error would make
	// every later report too large for the IMDS, which refuses it.
	for i := range evs {
		evs[i].Error = truncate(a.red.String(evs[i].Error), maxErrorBytes/4)
	}
	add := func(s *State) {
		for _, e := range evs {
			s.addLinkEvent(e)
		}
	}
	p := &a.pace
	p.mu.Lock()
	if p.take(time.Now(), force) {
		// This report carries the ring, and so every event held back.
		p.held = nil
		p.mu.Unlock()
		a.emit(r, add)
		return
	}
	held := r
	p.held, p.heldAt = &held, time.Now()
	start := !p.flushing
	p.flushing = true
	p.mu.Unlock()
	a.mu.Lock()
	add(a.st)
	a.mu.Unlock()
	if start {
		a.log.Warn("link events past their report budget: recorded, reported together later", "event", r.Event, "interface", r.Interface, "retryIn", a.opts.linkEvery)
		a.bg.Go(func() { a.flushHeld(ctx) })
	}
}

// flushHeld makes the report of the latest link event held back once the
// budget allows, with the ring and the state of the last outcome. If ctx
// ends first, the ring is persisted: the next start's report carries it.
func (a *Agent) flushHeld(ctx context.Context) {
	p := &a.pace
	for {
		p.mu.Lock()
		if p.held == nil {
			p.flushing = false
			p.mu.Unlock()
			return
		}
		d := p.wait(time.Now())
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			p.mu.Lock()
			p.flushing = false
			p.mu.Unlock()
			a.mu.Lock()
			if err := a.st.save(a.opts.StateDir); err != nil {
				a.log.Error("persist state", "err", err)
			}
			a.mu.Unlock()
			return
		case <-t.C:
		}
		p.mu.Lock()
		if now := time.Now(); p.held == nil || !(p.take(now, false) || p.takeQuiet(now)) {
			p.mu.Unlock()
			continue
		}
		r := *p.held
		p.held, p.flushing = nil, false
		p.mu.Unlock()
		a.mu.Lock()
		r.State, r.Generation = a.curState, a.curGen
		a.mu.Unlock()
		a.emit(r, nil)
		return
	}
}

// renewalNews reports whether a finished renewal must be reported whatever
// the budget: it failed, or the interface's addresses changed.
func renewalNews(lease Lease, err error) bool {
	if err != nil {
		return true
	}
	key := func(ps []netip.Prefix) []string {
		s := prefixStrings(ps)
		slices.Sort(s)
		return s
	}
	return !slices.Equal(key(lease.Addresses), key(lease.Previous))
}
