package agent

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Defaults of RetryPolicy.
const (
	DefaultRetryBase    = 5 * time.Second
	DefaultRetryMax     = 5 * time.Minute
	DefaultRetryRetries = 8
)

// errRetryDue ends the long-poll when a failed generation is due to be
// tried again.
var errRetryDue = errors.New("a failed generation is due to be retried")

// RetryPolicy paces the retries of a generation whose apply failed (a step
// failed: a package manager's lock, a busy file may be gone a moment
// later). A document that does not validate is never retried: it cannot
// pass later. A retry fetches the current document again, so a newer
// generation published meanwhile supersedes the failed one, and is reported
// as an applying report and an outcome with the next attempt number.
type RetryPolicy struct {
	// Base is the wait before the first retry, doubled before each next
	// one up to Max (default 5 s and 5 min); each wait is drawn between
	// half of it and all of it, so guests that failed together do not
	// retry together.
	Base, Max time.Duration
	// Retries bounds the retries of one generation within one run of the
	// agent (default 8: about 20 minutes with the default waits); negative:
	// none while running. A start always retries a generation whose last
	// apply failed, once, whatever the count: a restart (or a reboot) is
	// what clears many transient failures.
	Retries int
	// Delay, if set, replaces the computed wait before retry n (0 the
	// first of this run); tests inject it.
	Delay func(n int) time.Duration
}

func (p *RetryPolicy) defaults() {
	if p.Base <= 0 {
		p.Base = DefaultRetryBase
	}
	if p.Max <= 0 {
		p.Max = DefaultRetryMax
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	if p.Retries == 0 {
		p.Retries = DefaultRetryRetries
	}
}

// delay is the wait before retry n (0 the first): Base doubled n times,
// capped at Max, drawn in its upper half.
func (p *RetryPolicy) delay(n int) time.Duration {
	if p.Delay != nil {
		return max(p.Delay(n), 0)
	}
	d := p.Base << min(n, 30)
	if d <= 0 || d > p.Max {
		d = p.Max
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// applyRecord counts the applies of one document, persisted with the
// agent's state (State.Apply) so a restart continues its numbering.
type applyRecord struct {
	Generation int64  `json:"generation"`
	ETag       string `json:"etag,omitempty"`
	// Attempt is how many applies of it were started.
	Attempt int `json:"attempt"`
	// Failed says the last of them ended failed in a step: it is retried.
	Failed bool `json:"failed,omitempty"`
}

// nextAttempt is the attempt number of an apply of the document gen, tag
// that starts now: one more than the last apply's when that one failed (a
// retry), the same when it never reached an outcome (a stop, a crash or
// the reboot policy's restart interrupted it: applied again, not retried).
func (s *State) nextAttempt(gen int64, tag string) int {
	if r := s.Apply; r != nil && r.Generation == gen && r.ETag == tag {
		if r.Failed {
			return r.Attempt + 1
		}
		return max(r.Attempt, 1)
	}
	return 1
}

// retryOnStart reports whether the last outcome is a failed apply whose
// generation is to be tried again at start: it failed in a step, or a
// retry of it was stopped before its outcome (a document that did not
// validate leaves no applyRecord).
func (s *State) retryOnStart() bool {
	r := s.Apply
	return r != nil && r.Generation == s.AttemptedGeneration && r.ETag == s.AttemptedETag && s.lastFailed()
}

// retryState is the agent's pending retry (guarded by Agent.mu): due at
// at (zero: none), the count of retries scheduled in this run for the
// generation gen.
type retryState struct {
	at  time.Time
	gen int64
	n   int
}

// scheduleRetry arranges the retry of generation gen whose apply attempt
// failed, within the run's budget.
func (a *Agent) scheduleRetry(gen int64, attempt int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.retry.gen != gen {
		a.retry = retryState{gen: gen}
	}
	if a.retry.n >= a.opts.Retry.Retries {
		a.retry.at = time.Time{}
		a.log.Warn("generation failed: no more retries in this run; a new generation, or a restart of the agent, tries again",
			"generation", gen, "attempt", attempt, "retries", a.retry.n)
		return
	}
	d := a.opts.Retry.delay(a.retry.n)
	a.retry.n++
	a.retry.at = time.Now().Add(d)
	a.log.Info("generation failed: retrying", "generation", gen, "attempt", attempt+1, "retryIn", d)
}

// retryNow makes the failed generation gen due at once (a start).
func (a *Agent) retryNow(gen int64) {
	a.mu.Lock()
	a.retry = retryState{gen: gen, n: 1, at: time.Now()}
	a.mu.Unlock()
	a.log.Info("the last apply failed: retrying it", "generation", gen)
}

// cancelRetry drops a pending retry: the generation it was for succeeded,
// or another one came.
func (a *Agent) cancelRetry() {
	a.mu.Lock()
	a.retry.at = time.Time{}
	a.mu.Unlock()
}

// retryWait says whether a retry is due now (forced), or else how long
// until one is (0: none pending).
func (a *Agent) retryWait() (forced bool, wait time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.retry.at.IsZero() {
		return false, 0
	}
	d := time.Until(a.retry.at)
	if d <= 0 {
		return true, 0
	}
	return false, d
}
