package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/status"
)

// Arrival is a status report with the time the harness received it.
type Arrival struct {
	status.Report
	At time.Time
}

func (a Arrival) String() string {
	s := fmt.Sprintf("seq=%d gen=%d state=%s", a.Seq, a.Generation, a.State)
	if a.Event != "" {
		s += " event=" + a.Event
	}
	if len(a.Addresses) > 0 {
		s += " addresses=" + strings.Join(a.Addresses, ",")
	}
	if a.Error != "" {
		s += fmt.Sprintf(" error=%q", a.Error)
	}
	return s
}

// Reports follows one instance's status reports through the admin API's
// long-poll (GET /v1/instances/{id}/status?wait=true&after=SEQ): the way a
// pool manager awaits partial-ready and provisioned, without sleeping.
type Reports struct {
	lab *Lab
	id  string

	mu    sync.Mutex
	all   []Arrival
	after uint64
	next  int // first report no WaitFor has looked past
	// OnReport, if set, sees every report as it arrives (the demo).
	OnReport func(Arrival)
	// MaxWait bounds one WaitFor (default 45 s), so that a broken build
	// fails each test in well under its own deadline.
	MaxWait time.Duration
}

// Watch follows id's reports from now on (reports already stored count as
// arrived now).
func (l *Lab) Watch(id string) *Reports {
	return &Reports{lab: l, id: id}
}

// All returns every report received so far.
func (r *Reports) All() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Arrival(nil), r.all...)
}

// fetch does one long-poll of at most wait and appends what it brings.
func (r *Reports) fetch(ctx context.Context, wait time.Duration) error {
	secs := max(1, int(wait/time.Second))
	h, err := r.lab.Admin.Status(ctx, r.id, r.after, true, time.Duration(secs)*time.Second)
	if errors.Is(err, client.ErrNotModified) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	r.mu.Lock()
	var fresh []Arrival
	for _, rep := range h.Reports {
		if rep.Seq <= r.after && r.after != 0 {
			continue
		}
		a := Arrival{Report: rep, At: now}
		r.all = append(r.all, a)
		fresh = append(fresh, a)
		r.after = max(r.after, rep.Seq)
	}
	cb := r.OnReport
	r.mu.Unlock()
	if cb != nil {
		for _, a := range fresh {
			cb(a)
		}
	}
	return nil
}

// WaitFor returns the first report not yet looked past that satisfies
// match, long-polling for more until ctx ends. Reports before it are
// looked past. While the IMDS is unreachable it retries with a capped
// backoff.
func (r *Reports) WaitFor(ctx context.Context, what string, match func(status.Report) bool) (Arrival, error) {
	maxWait := r.MaxWait
	if maxWait <= 0 {
		maxWait = 45 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	delay := 5 * time.Millisecond
	var lastErr error
	for {
		r.mu.Lock()
		for i := r.next; i < len(r.all); i++ {
			if match(r.all[i].Report) {
				r.next = i + 1
				a := r.all[i]
				r.mu.Unlock()
				return a, nil
			}
		}
		r.next = len(r.all)
		r.mu.Unlock()
		wait := 30 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait < time.Second {
			break
		}
		if err := r.fetch(ctx, wait); err != nil {
			if ctx.Err() != nil {
				break
			}
			lastErr = err
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, 200*time.Millisecond)
			continue
		}
		delay = 5 * time.Millisecond
	}
	var seen []string
	for _, a := range r.All() {
		seen = append(seen, a.String())
	}
	return Arrival{}, fmt.Errorf("%s: no report for %q (last error %v); reports seen:\n  %s",
		r.id, what, lastErr, strings.Join(seen, "\n  "))
}

// Quiet long-polls for up to d and returns the reports that arrived in it
// (used to prove that nothing more happens, e.g. no third renewal).
func (r *Reports) Quiet(ctx context.Context, d time.Duration) []Arrival {
	end := time.Now().Add(d)
	r.mu.Lock()
	from := len(r.all)
	r.mu.Unlock()
	for time.Until(end) >= time.Second && ctx.Err() == nil {
		if err := r.fetch(ctx, time.Until(end)); err != nil {
			pauseAfterError(ctx)
		}
	}
	return r.since(from)
}

// since returns the reports that arrived after the first from.
func (r *Reports) since(from int) []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Arrival(nil), r.all[from:]...)
}

// pauseAfterError waits a little before the next long poll after a failed
// one (the IMDS restarting, say), or until ctx ends.
func pauseAfterError(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
}

// Settle long-polls until no report arrived for quiet (within at most
// limit) and returns the reports that arrived meanwhile: a pause before
// the next step, so that it does not meet the end of the last one. (Quiet
// is a window of at most d, which ends early once less than the long
// poll's second is left: after a report, often at once.)
func (r *Reports) Settle(ctx context.Context, quiet, limit time.Duration) []Arrival {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	r.mu.Lock()
	from := len(r.all)
	r.mu.Unlock()
	last := time.Now()
	for ctx.Err() == nil {
		left := quiet - time.Since(last)
		if left <= 0 {
			break
		}
		r.mu.Lock()
		n := len(r.all)
		r.mu.Unlock()
		// The long poll counts whole seconds: round up, at least one.
		err := r.fetch(ctx, max(time.Second, (left+time.Second-1)/time.Second*time.Second))
		r.mu.Lock()
		if len(r.all) > n {
			last = r.all[len(r.all)-1].At
		}
		r.mu.Unlock()
		if err != nil {
			pauseAfterError(ctx)
		}
	}
	return r.since(from)
}

// State matches a report of the given state and generation (0: any).
func State(state string, gen int64) func(status.Report) bool {
	return func(rep status.Report) bool {
		return rep.State == state && (gen == 0 || rep.Generation == gen) && rep.Event == ""
	}
}

// Settled matches the end of an apply of gen: provisioned, partial-ready or
// failed.
func Settled(gen int64) func(status.Report) bool {
	return func(rep status.Report) bool {
		if rep.Generation != gen || rep.Event != "" {
			return false
		}
		switch rep.State {
		case status.StateProvisioned, status.StatePartialReady, status.StateFailed:
			return true
		}
		return false
	}
}

// Renewed matches a dhcp-renewed event holding addr (any address when "").
func Renewed(addr string) func(status.Report) bool {
	return func(rep status.Report) bool {
		if rep.Event != status.EventDHCPRenewed {
			return false
		}
		if addr == "" {
			return true
		}
		for _, a := range rep.Addresses {
			if a == addr || strings.HasPrefix(a, addr+"/") {
				return true
			}
		}
		return false
	}
}

// Publish publishes doc for id and returns its generation.
func (l *Lab) Publish(ctx context.Context, id string, doc any) int64 {
	l.T.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		l.T.Fatal(err)
	}
	gen, err := l.Admin.Publish(ctx, id, b)
	if err != nil {
		l.T.Fatalf("publish %s: %v", id, err)
	}
	return gen
}

// Timings collects named durations and prints them as one table.
type Timings struct {
	t     testing.TB
	mu    sync.Mutex
	names []string
	ds    []time.Duration
}

// NewTimings returns a collector that logs its table when the test ends.
func NewTimings(t testing.TB, title string) *Timings {
	tm := &Timings{t: t}
	t.Cleanup(func() {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		if len(tm.names) == 0 {
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "TIMINGS %s\n", title)
		for i, n := range tm.names {
			fmt.Fprintf(&b, "  %-44s %8.1f ms\n", n, float64(tm.ds[i].Microseconds())/1000)
		}
		t.Log(b.String())
	})
	return tm
}

// Add records one timing and logs it at once.
func (tm *Timings) Add(name string, d time.Duration) {
	tm.mu.Lock()
	tm.names = append(tm.names, name)
	tm.ds = append(tm.ds, d)
	tm.mu.Unlock()
	tm.t.Logf("timing: %s = %v", name, d.Round(100*time.Microsecond))
}
