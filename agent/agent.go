package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// Defaults of Options.
const (
	// DefaultWaitTimeout is the IMDS's longest long-poll: a parked agent
	// asks again once every 5 minutes (each round is a few wake-ups).
	DefaultWaitTimeout  = 300 * time.Second
	DefaultPollInterval = 2 * time.Second
	DefaultBackoffBase  = 100 * time.Millisecond
	DefaultBackoffMax   = 10 * time.Second
)

// After a renewal the route to the IMDS may lag the address by a few
// milliseconds (a DHCP client's script adds the address, then the route):
// for fastWindow after it, a request that fails on the network is retried
// every fastRetry instead of backing off, so the agent is back on the wire
// as soon as the route exists.
const (
	fastWindow = 3 * time.Second
	fastRetry  = 10 * time.Millisecond
)

// errLinkCut cancels the IMDS requests in flight when a link event (a
// carrier change, a renewal) may have left their connection dead.
var errLinkCut = errors.New("cut by a link event")

// Options configure an Agent.
type Options struct {
	// IMDSURL is the guest API's base URL, e.g. http://169.254.169.254.
	IMDSURL string
	// StateDir holds StateFile; LogDir the status log (status.jsonl);
	// RunDir the current report (status.json).
	StateDir, LogDir, RunDir string
	Platform                 Platform
	Logger                   *slog.Logger
	// Redactor, if set, is the one the Logger's handler redacts with, so
	// the secrets the agent learns are scrubbed from every component's log.
	Redactor *Redactor
	Version  string

	// WaitTimeout is the long-poll timeout asked of the IMDS.
	WaitTimeout time.Duration
	// PollInterval paces plain polling when the IMDS does not long-poll.
	PollInterval time.Duration
	// BackoffBase and BackoffMax bound the full-jitter backoff of failures.
	BackoffBase, BackoffMax time.Duration
	// Retry paces the retries of a generation whose apply failed.
	Retry RetryPolicy
	// OnReport, if set, is called with each report once it is persisted and
	// in the status log, before it is sent (main signals readiness with it).
	OnReport func(status.Report)

	// linkBurst, linkEvery and linkQuiet pace the link-event reports
	// (linkpace.go; default linkReportBurst, linkReportEvery,
	// linkReportQuiet); tests set them.
	linkBurst int
	linkEvery time.Duration
	linkQuiet time.Duration
}

// Agent is the provisioning state machine.
type Agent struct {
	opts   Options
	log    *slog.Logger
	red    *Redactor
	imds   *imdsClient
	status *statusLog
	p      Platform

	mu       sync.Mutex // guards st, curState, curGen, retry
	st       *State
	curState string
	curGen   int64
	retry    retryState

	platMu sync.Mutex // one platform operation at a time

	// cutMu guards the cancel functions of the requests in flight, which
	// a link event cuts (cancelPoll the long-poll, cancelPost the report).
	cutMu      sync.Mutex
	cancelPoll context.CancelCauseFunc
	cancelPost context.CancelCauseFunc
	// fastUntil (UnixNano) ends the fine-cadence retry after a renewal;
	// renewedAt (UnixNano, 0: none pending) is when the last renewal
	// reconnected, until a request answers again.
	fastUntil, renewedAt atomic.Int64

	// linkMu guards links, down, busy, idle and linkSeen: the renewals
	// that link events started and the links they left down (see
	// watchLinks).
	linkMu   sync.Mutex
	links    map[string]*linkRenewal
	down     map[string]bool // interfaces whose carrier was lost and is not back
	busy     int             // interfaces whose renewal runs or is queued, plus a link event in hand
	idle     chan struct{}   // closed while busy is 0
	linkSeen chan struct{}   // closed and replaced after each link event
	bg       sync.WaitGroup
	pace     linkPacer // the budget of link-event reports

	reportReady chan struct{} // a report was queued
	wakeDeliver chan struct{} // reconnected: retry delivery at once
	wakePoll    chan struct{} // reconnected: poll at once
}

// New checks opts and returns an Agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.StateDir == "" || opts.LogDir == "" || opts.RunDir == "" {
		return nil, errors.New("agent: state, log and run dirs are required")
	}
	c, err := newIMDSClient(opts.IMDSURL)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.WaitTimeout, DefaultWaitTimeout)
	def(&opts.PollInterval, DefaultPollInterval)
	def(&opts.BackoffBase, DefaultBackoffBase)
	def(&opts.BackoffMax, DefaultBackoffMax)
	opts.Retry.defaults()
	if opts.linkBurst <= 0 {
		opts.linkBurst = linkReportBurst
	}
	def(&opts.linkEvery, linkReportEvery)
	def(&opts.linkQuiet, linkReportQuiet)
	if opts.Version == "" {
		opts.Version = Version
	}
	red := opts.Redactor
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if red == nil {
		red = NewRedactor()
		log = slog.New(red.Handler(log.Handler()))
	}
	idle := make(chan struct{})
	close(idle)
	return &Agent{
		links:       map[string]*linkRenewal{},
		pace:        linkPacer{burst: opts.linkBurst, every: opts.linkEvery, quiet: opts.linkQuiet},
		down:        map[string]bool{},
		idle:        idle,
		linkSeen:    make(chan struct{}),
		opts:        opts,
		log:         log,
		red:         red,
		imds:        c,
		p:           completePlatform(opts.Platform),
		reportReady: make(chan struct{}, 1),
		wakeDeliver: make(chan struct{}, 1),
		wakePoll:    make(chan struct{}, 1),
	}, nil
}

// completePlatform fills missing parts with ones that fail loudly.
func completePlatform(p Platform) Platform {
	u := Unsupported()
	orDefault(&p.Links, u.Links)
	orDefault(&p.DHCP, u.DHCP)
	orDefault(&p.Hostname, u.Hostname)
	orDefault(&p.Timezone, u.Timezone)
	orDefault(&p.Users, u.Users)
	orDefault(&p.Network, u.Network)
	return p
}

// orDefault sets *v to d when *v is the zero value (a nil interface).
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Run runs the agent until ctx is done. It returns an error only if it
// cannot start (unreadable state, unwritable directories); once running,
// every failure is logged, reported and retried.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.opts.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	st, err := LoadState(a.opts.StateDir)
	var corrupt *corruptStateError
	if errors.As(err, &corrupt) {
		// Writes are atomic, so only a damaged disk gets here. Refusing to
		// start would leave the VM unmanaged for good; start afresh and
		// keep the damaged file for a post-mortem.
		aside := corrupt.path + ".corrupt"
		a.log.Error("state file unreadable: moved aside, starting afresh", "err", err, "movedTo", aside)
		if rerr := os.Rename(corrupt.path, aside); rerr != nil {
			return fmt.Errorf("agent: %w (and moving it aside: %w)", err, rerr)
		}
		st, err = &State{Version: stateVersion}, nil
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	sl, err := newStatusLog(a.opts.LogDir, a.opts.RunDir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.st, a.status = st, sl
	a.noteReboot()

	// A crash between persisting a report and logging it leaves it only in
	// the queue: log it now, so the status log misses nothing.
	last := sl.lastSeq()
	for i := range st.Queue {
		if st.Queue[i].Seq > last {
			if err := sl.write(&st.Queue[i]); err != nil {
				a.log.Error("write status log", "err", err)
			}
		}
	}
	a.log.Info("agent starting", "version", a.opts.Version, "imds", a.opts.IMDSURL,
		"appliedGeneration", st.AppliedGeneration, "queued", len(st.Queue))

	a.emit(status.Report{State: status.StateStarting, Generation: st.AppliedGeneration}, nil)
	// Events (dhcp-renewed) carry the state of the last outcome.
	switch {
	case st.lastFailed():
		a.setCurrent(status.StateFailed, st.AttemptedGeneration)
		if st.retryOnStart() {
			a.retryNow(st.AttemptedGeneration)
		}
	case st.AppliedGeneration > 0:
		a.setCurrent(st.AppliedState, st.AppliedGeneration)
	default:
		a.emit(status.Report{State: status.StateWaiting}, nil)
	}

	var wg sync.WaitGroup
	wg.Go(func() { a.deliver(ctx) })
	wg.Go(func() { a.watchLinks(ctx) })
	if p := st.PendingRenewDHCP; p != nil {
		a.renewAll(ctx, *p)
	}
	a.watchConfig(ctx)
	wg.Wait()
	a.bg.Wait()
	a.log.Info("agent stopped")
	return nil
}

func (a *Agent) setCurrent(state string, gen int64) {
	a.mu.Lock()
	a.curState, a.curGen = state, gen
	a.mu.Unlock()
}

// emit makes a report: it takes the next seq, applies mutate to the state,
// queues the report, persists the state (so nothing the report claims is
// lost to a crash), writes the status log, and only then lets the
// delivery loop send it.
func (a *Agent) emit(r status.Report, mutate func(*State)) status.Report {
	a.mu.Lock()
	a.st.Seq++
	r.Seq = a.st.Seq
	r.Time = status.Time{Time: time.Now()}
	r.AgentVersion = a.opts.Version
	// Redact, and bound the errors so a report stays far below the IMDS's
	// 64 KiB limit (a refused report would be dropped).
	r.Error = truncate(a.red.String(r.Error), maxErrorBytes)
	for i := range r.Steps {
		r.Steps[i].Error = truncate(a.red.String(r.Steps[i].Error), maxErrorBytes/4)
	}
	if r.Event == "" {
		a.curState, a.curGen = r.State, r.Generation
	}
	if mutate != nil {
		mutate(a.st)
	}
	r.LinkEvents = slices.Clone(a.st.LinkEvents)
	a.st.Queue = append(a.st.Queue, r)
	if n := len(a.st.Queue) - maxQueue; n > 0 {
		a.log.Warn("report queue full: dropping the oldest undelivered reports", "dropped", n)
		a.st.Queue = append([]status.Report(nil), a.st.Queue[n:]...)
	}
	if err := a.st.save(a.opts.StateDir); err != nil {
		a.log.Error("persist state", "err", err)
	}
	if err := a.status.write(&r); err != nil {
		a.log.Error("write status log", "err", err)
	}
	a.mu.Unlock()

	a.log.Info("report", "seq", r.Seq, "state", r.State, "generation", r.Generation, "event", r.Event, "err", r.Error)
	select {
	case a.reportReady <- struct{}{}:
	default:
	}
	if a.opts.OnReport != nil {
		a.opts.OnReport(r)
	}
	return r
}

// deliver sends queued reports to the IMDS, oldest first, one at a time,
// removing each from the persisted queue once the IMDS took it.
func (a *Agent) deliver(ctx context.Context) {
	bo := backoff{base: a.opts.BackoffBase, max: a.opts.BackoffMax}
	fl := failureLog{log: a.log, op: "send status report"}
	for ctx.Err() == nil {
		a.mu.Lock()
		var head status.Report
		have := len(a.st.Queue) > 0
		if have {
			head = a.st.Queue[0]
		}
		a.mu.Unlock()
		if !have {
			// Nothing to send: the connection the reports went over is
			// closed now, in the busy moment, rather than by an idle
			// timer while the agent is parked (a timer that fires wakes
			// the whole runtime).
			a.imds.closeIdle()
			select {
			case <-ctx.Done():
				return
			case <-a.reportReady:
			case <-a.wakeDeliver:
			}
			continue
		}
		// A stop does not cut a report in flight: the IMDS may have taken
		// it already, and a restart would send it a second time. A link
		// event does: the connection may be dead, and the report is sent
		// again at once on a fresh one (the IMDS takes a resend of the
		// report it stored last as delivered, so it is stored once).
		pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		tctx, tcancel := context.WithTimeout(pctx, 5*time.Second)
		a.cutMu.Lock()
		a.cancelPost = cancel
		a.cutMu.Unlock()
		err := a.imds.postStatus(tctx, &head)
		a.cutMu.Lock()
		a.cancelPost = nil
		a.cutMu.Unlock()
		cut := errors.Is(context.Cause(pctx), errLinkCut)
		tcancel()
		cancel(nil)
		if err != nil && cut {
			a.log.Info("status report cut by a link event: sending it again", "seq", head.Seq)
			bo.reset()
			continue
		}
		var he *HTTPError
		if err != nil && errors.As(err, &he) && (he.StatusCode == 400 || he.StatusCode == 413) {
			// The IMDS will never take this report: retrying it would block
			// every later one.
			a.log.Error("status report refused: dropping it", "seq", head.Seq, "err", err)
			err = nil
		}
		if err != nil {
			d := a.retryIn(&bo, err)
			fl.fail(failureKind(err), err, d)
			if !a.sleep(ctx, d, a.wakeDeliver) {
				return
			}
			continue
		}
		fl.ok()
		bo.reset()
		a.reached()
		a.mu.Lock()
		if len(a.st.Queue) > 0 && a.st.Queue[0].Seq == head.Seq {
			a.st.Queue = a.st.Queue[1:]
			if err := a.st.save(a.opts.StateDir); err != nil {
				a.log.Error("persist state", "err", err)
			}
		}
		a.mu.Unlock()
	}
}

// sleep waits d, or less if wake fires; false if ctx ended.
func (a *Agent) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// watchConfig long-polls the IMDS for new generations and applies them.
func (a *Agent) watchConfig(ctx context.Context) {
	bo := backoff{base: a.opts.BackoffBase, max: a.opts.BackoffMax}
	fl := failureLog{log: a.log, op: "get config"}
	// legacy: the IMDS refused an If-None-Match with an epoch (an IMDS
	// older than epochs, after a downgrade): send the generation alone
	// until a document with an epoch comes again.
	legacy := false
	for ctx.Err() == nil {
		a.mu.Lock()
		known := a.st.ifNoneMatch()
		a.mu.Unlock()
		if t, err := api.ParseETag(known); legacy && err == nil && t.Epoch != "" {
			known = api.ETag{Generation: t.Generation}.String()
		}
		// A failed generation due to be retried: fetch the current
		// document whatever its ETag (the failed one, or a newer one that
		// supersedes it), at once. Not yet due: the long-poll ends when it
		// is (errRetryDue).
		forced, retryIn := a.retryWait()
		wait := a.opts.WaitTimeout
		if forced {
			known, wait = "", 0
		}

		pctx, cancel := context.WithCancelCause(ctx)
		var stopRetryTimer context.CancelFunc = func() {}
		if retryIn > 0 {
			pctx, stopRetryTimer = context.WithTimeoutCause(pctx, retryIn, errRetryDue)
		}
		a.cutMu.Lock()
		a.cancelPoll = cancel
		a.cutMu.Unlock()
		start := time.Now()
		ans, err := a.imds.getConfig(pctx, known, wait)
		a.cutMu.Lock()
		a.cancelPoll = nil
		a.cutMu.Unlock()
		cut := errors.Is(context.Cause(pctx), errLinkCut)
		due := errors.Is(context.Cause(pctx), errRetryDue)
		stopRetryTimer()
		cancel(nil)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if cut || due {
				// A link event cut the poll, or a retry is due: poll
				// again at once.
				bo.reset()
				continue
			}
			var he *HTTPError
			if errors.As(err, &he) && he.StatusCode == 404 && he.Message == msgNoConfig {
				// A long-polling IMDS would have parked instead: this one
				// only answers plain polls. (A retry finds nothing to
				// retry: the document is gone.)
				if forced {
					a.cancelRetry()
				}
				fl.ok()
				bo.reset()
				a.sleep(ctx, a.opts.PollInterval, a.wakePoll)
				continue
			}
			if errors.As(err, &he) && he.StatusCode == 400 && !legacy && epochOf(known) != "" {
				a.log.Warn("IMDS refused an If-None-Match with a store epoch: sending the generation alone", "ifNoneMatch", known, "err", err)
				legacy = true
				continue
			}
			d := a.retryIn(&bo, err)
			fl.fail(failureKind(err), err, d)
			a.sleep(ctx, d, a.wakePoll)
			continue
		}
		fl.ok()
		bo.reset()
		a.reached()
		if ans.Epoch != "" {
			legacy = false
		}
		if forced {
			// The retry is taken: handle schedules another if it fails again.
			a.cancelRetry()
		}
		if ans.NotModified || (known != "" && ans.ETag == known) {
			if ans.NotModified && time.Since(start) >= a.opts.WaitTimeout/2 {
				continue // a genuine long-poll timeout
			}
			// The IMDS answered at once with nothing new: it does not
			// long-poll, so poll at an interval instead of spinning.
			a.sleep(ctx, a.opts.PollInterval, a.wakePoll)
			continue
		}
		if err := a.handle(ctx, ans); err != nil {
			d := bo.next(0)
			fl.fail("bad document", err, d)
			a.sleep(ctx, d, a.wakePoll)
			continue
		}
		a.mu.Lock()
		next := a.st.ifNoneMatch()
		a.mu.Unlock()
		if next == known {
			// The same document again, under an ETag the agent cannot send
			// back (none, or one it does not read): the IMDS cannot park
			// on it, so poll at an interval instead of spinning.
			a.sleep(ctx, a.opts.PollInterval, a.wakePoll)
		}
	}
}

// handle validates and applies one document.
func (a *Agent) handle(ctx context.Context, ans configAnswer) error {
	a.red.Add(secretsIn(ans.Body)...)
	gen, tag := ans.Generation, ans.ETag
	if gen == 0 {
		// No ETag: take the document's own generation, read leniently so a
		// document that fails validation still gets its failed report.
		var g struct {
			Generation int64 `json:"generation"`
		}
		_ = json.Unmarshal(ans.Body, &g)
		gen = g.Generation
	}
	if gen <= 0 {
		return errors.New("config without a generation (no ETag, no generation member)")
	}
	a.mu.Lock()
	if a.st.isApplied(gen, ans.Epoch) {
		// Never apply an applied document twice (generations only grow
		// within a store, so this is an IMDS that forgot what it served).
		// Remember its ETag, which may name the store's epoch for the
		// first time, so the next poll waits for a change of it.
		a.log.Warn("config of an already applied generation: ignored", "generation", gen, "etag", tag)
		old := *a.st
		a.st.AttemptedGeneration, a.st.AttemptedETag = gen, tag
		if epochOf(a.st.AppliedETag) == "" && ans.Epoch != "" {
			a.st.AppliedETag = tag
		}
		if a.st.AttemptedGeneration != old.AttemptedGeneration || a.st.AttemptedETag != old.AttemptedETag || a.st.AppliedETag != old.AppliedETag {
			if err := a.st.save(a.opts.StateDir); err != nil {
				a.log.Error("persist state", "err", err)
			}
		}
		a.mu.Unlock()
		return nil
	}
	if ae := epochOf(a.st.AppliedETag); ae != "" && ae == ans.Epoch && gen < a.st.AppliedGeneration {
		// Generations only grow within a store: this one was restored from
		// an older backup and answered anyway. Never go back to an older
		// document; keep waiting on the applied one, which a current IMDS
		// answers with a publish numbered past it.
		applied := a.st.AppliedGeneration
		a.mu.Unlock()
		a.log.Warn("config of an older generation of the same IMDS store: ignored (was the store restored from an older backup?)",
			"generation", gen, "etag", tag, "applied", applied)
		return nil
	}
	if ae := epochOf(a.st.AppliedETag); ae != "" && ans.Epoch != "" && ae != ans.Epoch {
		a.log.Warn("config from another IMDS store (its epoch changed): applying it whatever its generation",
			"generation", gen, "etag", tag, "appliedEtag", a.st.AppliedETag)
	}
	a.mu.Unlock()
	a.log.Info("config received", "generation", gen, "etag", tag, "bytes", len(ans.Body))
	doc, err := config.Decode(ans.Body)
	if err == nil {
		// What this OS cannot apply fails the document before any step.
		err = a.checkDocument(doc)
	}
	if err != nil {
		a.cancelRetry() // it cannot pass later
		a.emit(status.Report{State: status.StateFailed, Generation: gen, Error: err.Error()},
			func(s *State) { s.AttemptedGeneration, s.AttemptedETag, s.Apply = gen, tag, nil })
		return nil
	}

	a.mu.Lock()
	attempt := a.st.nextAttempt(gen, tag)
	a.mu.Unlock()
	a.emit(status.Report{State: status.StateApplying, Generation: gen, Attempt: attempt},
		func(s *State) { s.Apply = &applyRecord{Generation: gen, ETag: tag, Attempt: attempt} })
	steps, reboot, failures := a.apply(ctx, doc)
	appliedAt := time.Now()
	if ctx.Err() != nil {
		// Stopped mid-apply: the generation is neither applied nor failed;
		// the next start applies it again (every step is a reconcile).
		return nil
	}
	var rebooting bool
	if steps, reboot, failures, rebooting = a.rebootStep(ctx, doc, gen, tag, steps, reboot, failures, rebootWait); rebooting {
		return nil // the machine restarts; its next boot reports the outcome
	}
	r := status.Report{Generation: gen, Steps: steps, RebootRequired: reboot, Attempt: attempt}
	switch {
	case len(failures) > 0:
		r.State = status.StateFailed
		r.Error = strings.Join(failures, "; ")
	case doc.Partial:
		r.State = status.StatePartialReady
	default:
		r.State = status.StateProvisioned
	}
	if r.State != status.StateFailed {
		r.SSHHostKeys = a.hostKeys(ctx, gen)
	}
	// The outcome says the machine is ready: not while a renewal that a
	// link event (the claim's NIC bounce) started is still running.
	if !a.awaitRenewals(ctx) {
		return nil
	}
	var renew *int64
	a.mu.Lock()
	if n := doc.Network; n != nil && n.RenewDHCP != nil && (a.st.RenewDHCP == nil || *a.st.RenewDHCP != *n.RenewDHCP) {
		v := *n.RenewDHCP
		renew = &v
	}
	a.mu.Unlock()
	a.emit(r, func(s *State) {
		s.AttemptedGeneration, s.AttemptedETag = gen, tag
		s.Reboot = nil
		if len(failures) == 0 {
			s.AppliedGeneration, s.AppliedState, s.AppliedETag = gen, r.State, tag
		}
		if renew != nil {
			s.PendingRenewDHCP = renew
		}
		if s.Apply != nil {
			s.Apply.Failed = len(failures) > 0
		}
	})
	if len(failures) > 0 {
		a.scheduleRetry(gen, attempt)
	} else {
		a.cancelRetry()
	}
	if renew != nil {
		a.renewAll(ctx, *renew) // it sends the new host name too
	} else {
		a.renewForHostname(ctx, steps, appliedAt)
	}
	return nil
}

// apply runs the steps of doc in the fixed order hostname, timezone,
// users, network. A section the document leaves out is not touched and
// gets no step. A failed step does not stop the later ones: what can be
// applied is, and the generation is reported failed.
func (a *Agent) apply(ctx context.Context, doc *config.Document) (steps []status.Step, reboot bool, failures []string) {
	type step struct {
		name    string
		present bool
		run     func() (StepResult, error)
	}
	list := []step{
		{status.StepHostname, doc.Hostname != "", func() (StepResult, error) { return a.p.Hostname.ApplyHostname(ctx, doc.Hostname) }},
		{status.StepTimezone, doc.Timezone != "", func() (StepResult, error) { return a.p.Timezone.ApplyTimezone(ctx, doc.Timezone) }},
		{status.StepUsers, doc.Users != nil, func() (StepResult, error) { return a.p.Users.ApplyUsers(ctx, doc.Users) }},
		{status.StepSSHHostKeys, doc.SSHHostKeys != nil && doc.SSHHostKeys.Regenerate != nil, func() (StepResult, error) {
			return a.regenerateHostKeys(ctx, doc.Generation, *doc.SSHHostKeys.Regenerate)
		}},
		{status.StepNetwork, doc.Network != nil, func() (StepResult, error) { return a.p.Network.ApplyNetwork(ctx, doc.Network) }},
	}
	a.platMu.Lock()
	defer a.platMu.Unlock()
	for _, s := range list {
		if !s.present || ctx.Err() != nil {
			continue
		}
		a.log.Info("step started", "step", s.name, "generation", doc.Generation)
		t0 := time.Now()
		res, err := s.run()
		out := status.Step{Name: s.name, OK: err == nil, MS: time.Since(t0).Milliseconds(), Changed: res.Changed, RebootRequired: res.RebootRequired}
		if err != nil {
			out.Error = a.red.String(err.Error())
			failures = append(failures, s.name+": "+out.Error)
			a.log.Warn("step failed", "step", s.name, "ms", out.MS, "err", err)
		} else {
			reboot = reboot || res.RebootRequired
			a.log.Info("step finished", "step", s.name, "ms", out.MS, "changed", res.Changed, "actions", res.Actions)
		}
		steps = append(steps, out)
	}
	return steps, reboot, failures
}

// reconnect re-establishes the IMDS connection at once after a link event
// (a carrier change, a renewal: the guest's address or route may have
// changed): idle connections are dropped, and every request in flight is
// cut and issued again at once on a fresh connection (the parked poll, the
// report being sent); a delivery or poll waiting out a backoff goes at
// once. After a renewal (fast), failures on the network are retried at a
// fine cadence for fastWindow: the route may follow the address.
func (a *Agent) reconnect(fast bool) {
	if fast {
		now := time.Now()
		a.fastUntil.Store(now.Add(fastWindow).UnixNano())
		a.renewedAt.Store(now.UnixNano())
	}
	a.imds.reconnect()
	a.cutMu.Lock()
	for _, c := range []context.CancelCauseFunc{a.cancelPoll, a.cancelPost} {
		if c != nil {
			c(errLinkCut)
		}
	}
	a.cutMu.Unlock()
	for _, c := range []chan struct{}{a.wakePoll, a.wakeDeliver} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// reached notes that the IMDS answered: the first answer after a renewal
// is logged with how long the way back took.
func (a *Agent) reached() {
	if at := a.renewedAt.Swap(0); at != 0 {
		a.log.Info("IMDS reached after a renewal", "ms", time.Since(time.Unix(0, at)).Milliseconds())
	}
}

// retryIn is the wait after the failed request err: fastRetry for a
// failure on the network within fastWindow of a renewal, else the backoff.
func (a *Agent) retryIn(bo *backoff, err error) time.Duration {
	var he *HTTPError
	if !errors.As(err, &he) && time.Now().UnixNano() < a.fastUntil.Load() {
		return fastRetry
	}
	return bo.after(err)
}

// maxErrorBytes bounds a report's error.
const maxErrorBytes = 8 << 10

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …(truncated)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
