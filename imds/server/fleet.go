package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// The fleet view: what the IMDS knows of each instance beyond the store's
// record, kept in memory from the store's feed (follow.go) and the reports
// this server receives (appendStatus): when the current generation was
// published, when the last report arrived (by this host's clock, not the
// guest's), the published document's hostname and partial tag. The fleet
// page (ui.go), the fleet metrics (fleetmetrics.go), the log line of each
// report that changes an instance's state and systemd's STATUS= read it.
//
// An instance is stale when a document is published (generation above 0)
// that its guest has not settled on (reported partial-ready, provisioned
// or failed for that generation or a later one), and no report has come
// for StaleAfter since the publish or the guest's last report, whichever
// is later. A settled instance is never stale, however long it stays
// silent: an agent with nothing to do sends nothing.

// maxLoggedError bounds the report error a guest report's log line
// carries (the status history keeps it whole).
const maxLoggedError = 1024

// DefaultStaleAfter is Options.StaleAfter's default.
const DefaultStaleAfter = 5 * time.Minute

// fleet holds the fleet view. Its methods are safe for concurrent use.
//
// A report (reported, and the feed's status event) takes no lock of the
// whole fleet for writing: it finds its entry under mu's read lock and
// changes it under the entry's own lock, so the reports a batch commit
// releases at once do not queue on one lock. mu is write-locked only to
// add or remove entries (a registration, a deletion, a resync).
type fleet struct {
	now        func() time.Time
	staleAfter time.Duration

	mu   sync.RWMutex
	byID map[string]*fleetEntry
	// wake fires at every change the fleet page shows (a publish, a
	// registration, a report, a deletion).
	wake changeSignal

	// streams counts the fleet page's open event streams (ui.go).
	streams atomic.Int32
}

// fleetEntry is the fleet view of one instance. Its fields are mu's.
type fleetEntry struct {
	mu sync.Mutex
	// pubGen is the published generation; pubAt when this process saw it
	// published, or first saw it (loaded at start: pubLoaded).
	pubGen    int64
	pubAt     time.Time
	pubLoaded bool
	hostname  string
	partial   bool
	// seenAt is when the last report arrived (zero: none known); for a
	// report loaded at start it is the report's own time, capped at the
	// load.
	seenAt time.Time
	// provisionedGen is the generation whose publish-to-provisioned time
	// was observed, so that it is observed once.
	provisionedGen int64
}

func newFleet(now func() time.Time, staleAfter time.Duration) *fleet {
	return &fleet{now: now, staleAfter: staleAfter, byID: map[string]*fleetEntry{}}
}

// changed returns a channel closed at the fleet's next change.
func (f *fleet) changed() <-chan struct{} { return f.wake.next() }

// entry returns id's entry (nil: none).
func (f *fleet) entry(id string) *fleetEntry {
	f.mu.RLock()
	e := f.byID[id]
	f.mu.RUnlock()
	return e
}

// follow applies one event of the store's feed (after the index did).
func (f *fleet) follow(ev store.Event) {
	now := f.now()
	switch ev.Type {
	case store.EventResync:
		keep := make(map[string]bool, len(ev.Records))
		f.mu.Lock()
		for _, rec := range ev.Records {
			keep[rec.ID] = true
			f.record(rec, now, true)
		}
		for id := range f.byID {
			if !keep[id] {
				delete(f.byID, id)
			}
		}
		f.mu.Unlock()
	case store.EventChanged:
		f.mu.Lock()
		f.record(ev.Record, now, false)
		f.mu.Unlock()
	case store.EventDeleted:
		f.mu.Lock()
		delete(f.byID, ev.ID)
		f.mu.Unlock()
	case store.EventStatus:
		if e := f.entry(ev.ID); e != nil {
			e.mu.Lock()
			e.seenAt = now
			e.mu.Unlock()
		}
	default:
		return
	}
	f.wake.fire()
}

// record notes rec's generation and first-seen report; f.mu is held for
// writing. resync says rec comes from a resync (the first one: the
// store's state when this process started), where an instance first seen
// was published before it was seen.
func (f *fleet) record(rec store.Record, now time.Time, resync bool) {
	e := f.byID[rec.ID]
	if e == nil {
		e = &fleetEntry{pubGen: -1}
		f.byID[rec.ID] = e
		if rec.LastStatus != nil {
			e.seenAt = rec.LastStatus.Time.Time
			if e.seenAt.After(now) {
				e.seenAt = now
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if rec.Generation == e.pubGen {
		return
	}
	// A generation seen live was published now; one first seen in a
	// resync was published at some time before it.
	first := e.pubGen < 0
	e.pubGen, e.pubAt, e.pubLoaded = rec.Generation, now, first && resync && rec.Generation > 0
	e.hostname, e.partial = "", false
	if rec.Config != nil {
		var d struct {
			Hostname string `json:"hostname"`
			Partial  bool   `json:"partial"`
		}
		if json.Unmarshal(rec.Config, &d) == nil {
			e.hostname, e.partial = d.Hostname, d.Partial
		}
	}
}

// settled reports whether a guest that last reported last has settled on
// generation gen: nothing more is expected of it until the next publish.
func settled(last *status.Report, gen int64) bool {
	if last == nil || last.Generation < gen {
		return false
	}
	switch last.State {
	case status.StatePartialReady, status.StateProvisioned, status.StateFailed:
		return true
	}
	return false
}

// fleetInfo is what the fleet view adds to an instance's record.
type fleetInfo struct {
	PublishedAt time.Time // when this process saw the current generation published (or started)
	LastSeen    time.Time // when the last report arrived; zero: none
	Hostname    string    // the published document's hostname
	Partial     bool      // the published document is a partial one
	Stale       bool
}

// info returns id's fleet view given its published generation and last
// report, as of now.
func (f *fleet) info(id string, gen int64, last *status.Report, now time.Time) fleetInfo {
	e := f.entry(id)
	if e == nil {
		return fleetInfo{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return fleetInfo{
		PublishedAt: e.pubAt, LastSeen: e.seenAt, Hostname: e.hostname, Partial: e.partial,
		Stale: f.staleLocked(e, gen, last, now),
	}
}

// staleLocked is info's staleness; e.mu is held.
func (f *fleet) staleLocked(e *fleetEntry, gen int64, last *status.Report, now time.Time) bool {
	if gen <= 0 || f.staleAfter <= 0 || settled(last, gen) {
		return false
	}
	since := e.pubAt
	if e.seenAt.After(since) {
		since = e.seenAt
	}
	return !since.IsZero() && now.Sub(since) >= f.staleAfter
}

// reported is called with each report this server stored for id, and the
// last report before it (nil: none). It returns how long the guest took
// from the publish of r's generation to provisioned when r is the first
// provisioned report of the current generation whose publish this process
// saw (ok false otherwise), and the time since that publish (0: unknown).
func (f *fleet) reported(id string, r status.Report, now time.Time) (toProvisioned time.Duration, ok bool, sincePublish time.Duration) {
	e := f.entry(id)
	if e == nil {
		return 0, false, 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.Generation != e.pubGen || e.pubGen <= 0 {
		return 0, false, 0
	}
	if !e.pubLoaded {
		sincePublish = now.Sub(e.pubAt)
	}
	if r.State == status.StateProvisioned && e.provisionedGen != r.Generation {
		e.provisionedGen = r.Generation
		if !e.pubLoaded {
			return sincePublish, true, sincePublish
		}
	}
	return 0, false, sincePublish
}

// reportReceived logs a stored report that changes the instance's state
// (another state or generation than last) at info, any other at debug,
// and feeds the publish-to-provisioned histogram.
func (s *Server) reportReceived(id string, last *status.Report, r status.Report) {
	now := s.opts.Now()
	took, ok, since := s.fleet.reported(id, r, now)
	if ok {
		s.m.fleet.toProvisioned.Observe(took.Seconds())
	}
	level := slog.LevelDebug
	if last == nil || last.State != r.State || last.Generation != r.Generation {
		level = slog.LevelInfo
	}
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("instance", id), slog.Int64("generation", r.Generation), slog.String("state", r.State),
		slog.Uint64("seq", r.Seq),
	}
	if r.Event != "" {
		attrs = append(attrs, slog.String("event", r.Event))
	}
	if len(r.Steps) > 0 {
		var total int64
		steps := make([]any, 0, len(r.Steps))
		for _, st := range r.Steps {
			total += st.MS
			steps = append(steps, slog.Int64(stepKey(st.Name, len(steps)), st.MS))
		}
		attrs = append(attrs, slog.Group("steps", steps...), slog.Int64("ms", total))
	}
	if since > 0 {
		attrs = append(attrs, slog.Duration("sincePublish", since.Round(time.Millisecond)))
	}
	if e := r.Error; e != "" {
		// A report may carry 64 KiB of error; the log line keeps its head.
		if len(e) > maxLoggedError {
			e = strings.ToValidUTF8(e[:maxLoggedError], "") + "…"
		}
		attrs = append(attrs, slog.String("err", e))
	}
	if r.AgentVersion != "" {
		attrs = append(attrs, slog.String("agentVersion", r.AgentVersion))
	}
	s.log.LogAttrs(context.Background(), level, "guest report", attrs...)
}

// stepKeyRE is compiled at the first guest report that has steps, not at
// start: its bounded repetition compiles to a large program, and an idle
// service need not hold it or have run the compiler (issue 15).
var stepKeyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-zA-Z0-9]{0,31}$`) })

// stepKey is a step's log key: its name when it has a key's shape (the
// agent's step names do), else step<i>, so a guest cannot bring a key of
// its own making into the log.
func stepKey(name string, i int) string {
	if stepKeyRE().MatchString(name) {
		return name
	}
	return fmt.Sprintf("step%d", i)
}
