package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// flakyUsers fails the users step while failures remain (negative: for
// ever), then does what the fake platform does.
type flakyUsers struct {
	*fakePlatform
	failures atomic.Int32
}

func (f *flakyUsers) ApplyUsers(ctx context.Context, us []config.User) (StepResult, error) {
	if n := f.failures.Add(-1); n >= 0 || n < -1000 {
		if n < -1000 {
			f.failures.Store(-2000) // stays permanent
		}
		f.mu.Lock()
		f.calls = append(f.calls, "users=FAILED")
		f.mu.Unlock()
		return StepResult{}, errors.New("useradd: cannot lock /etc/passwd; try again later")
	}
	return f.fakePlatform.ApplyUsers(ctx, us)
}

// withFlakyUsers makes the harness's users step fail n times (-1: always)
// and paces retries with delay.
func withFlakyUsers(h *harness, n int32, retries int, delay func(int) time.Duration) *flakyUsers {
	f := &flakyUsers{fakePlatform: h.plat}
	f.failures.Store(n)
	if n < 0 {
		f.failures.Store(-2000)
	}
	h.tweak = func(o *Options) {
		o.Platform.Users = f
		o.Retry = RetryPolicy{Retries: retries, Delay: delay}
	}
	return f
}

// attempts renders the applies of a report list: state/generation#attempt
// of every report that is not an event.
func attempts(rs []status.Report) string {
	var s []string
	for _, r := range rs {
		if r.Event != "" {
			continue
		}
		x := fmt.Sprintf("%s/%d", r.State, r.Generation)
		if r.Attempt > 0 {
			x += fmt.Sprintf("#%d", r.Attempt)
		}
		s = append(s, x)
	}
	return strings.Join(s, " ")
}

func countAttempt(rs []status.Report, state string, gen int64, attempt int) int {
	n := 0
	for _, r := range rs {
		if r.Event == "" && r.State == state && r.Generation == gen && r.Attempt == attempt {
			n++
		}
	}
	return n
}

// TestRetryTransientFailure: a step fails twice, then succeeds; the agent
// retries by itself, each retry an applying report and an outcome with its
// attempt number, the success too.
func TestRetryTransientFailure(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var asked []int
	withFlakyUsers(h, 2, 0, func(n int) time.Duration {
		mu.Lock()
		asked = append(asked, n)
		mu.Unlock()
		return time.Millisecond
	})
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	got := h.imds.all()
	checkSeq(t, got)
	want := fmt.Sprintf("starting/0 waiting/0 applying/%[1]d#1 failed/%[1]d#1 applying/%[1]d#2 failed/%[1]d#2 applying/%[1]d#3 provisioned/%[1]d#3", g)
	if s := attempts(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	for _, r := range got {
		if r.State == status.StateFailed && !strings.Contains(r.Error, "cannot lock /etc/passwd") {
			t.Errorf("failed report without the step's error: %+v", r)
		}
	}
	mu.Lock()
	if fmt.Sprint(asked) != "[0 1]" {
		t.Errorf("retry delays asked for %v, want [0 1] (one per retry, counting up)", asked)
	}
	mu.Unlock()
	st, err := LoadState(h.stateDir)
	if err != nil || st.Apply == nil || st.Apply.Attempt != 3 || st.Apply.Failed || st.AppliedGeneration != g {
		t.Errorf("state %+v (apply %+v), %v: want generation %d applied at attempt 3", st, st.Apply, err, g)
	}
	if s := states(readLog(t, h.logDir)); s != states(got) {
		t.Errorf("status log %s\nsent       %s", s, states(got))
	}
}

// TestRetryPermanentFailure: a step that always fails is retried Retries
// times in a run, then left failed; a newer generation supersedes it (its
// own attempt 1) and nothing retries the old one any more.
func TestRetryPermanentFailure(t *testing.T) {
	h := newHarness(t)
	f := withFlakyUsers(h, -1, 2, func(int) time.Duration { return time.Millisecond })
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitFor("attempt 3 failed", func(rs []status.Report, _ []request) bool {
		return countAttempt(rs, status.StateFailed, g, 3) == 1
	})
	if err := pollUntil(func() bool { return strings.Contains(h.logs.String(), "no more retries in this run") }); err != nil {
		t.Fatalf("no give-up line after the last retry: %v", err)
	}
	f.failures.Store(0) // fixed now, but nothing retries generation g
	g2 := h.imds.publish(reconfDoc)
	p := h.imds.waitReport(status.StateProvisioned, g2)
	if p.Attempt != 1 {
		t.Errorf("the newer generation's outcome has attempt %d, want 1", p.Attempt)
	}
	got := h.imds.all()
	checkSeq(t, got)
	want := fmt.Sprintf("starting/0 waiting/0 applying/%[1]d#1 failed/%[1]d#1 applying/%[1]d#2 failed/%[1]d#2 applying/%[1]d#3 failed/%[1]d#3 applying/%[2]d#1 provisioned/%[2]d#1", g, g2)
	if s := attempts(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	// A restart does not go back to the superseded generation.
	h.stop()
	h.start()
	h.imds.waitReport(status.StateStarting, g2)
	st, err := LoadState(h.stateDir)
	if err != nil || st.retryOnStart() || st.Apply == nil || st.Apply.Generation != g2 {
		t.Errorf("state after the newer generation: %+v (apply %+v), %v", st, st.Apply, err)
	}
}

// TestRetryAfterRestart: a generation that failed is retried when the agent
// starts again, and the attempt count survives each restart; an attempt
// stopped in its middle is not a failure: the next start applies it again
// under the same number.
func TestRetryAfterRestart(t *testing.T) {
	h := newHarness(t)
	// No retry while running: only a start retries.
	f := withFlakyUsers(h, -1, -1, nil)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitFor("attempt 1 failed", func(rs []status.Report, _ []request) bool {
		return countAttempt(rs, status.StateFailed, g, 1) == 1
	})
	h.stop()

	h.start() // still failing: attempt 2
	h.imds.waitFor("attempt 2 failed", func(rs []status.Report, _ []request) bool {
		return countAttempt(rs, status.StateFailed, g, 2) == 1
	})
	h.stop()

	// Attempt 3 is stopped inside the users step.
	f.failures.Store(0)
	h.plat.block[status.StepUsers] = make(chan struct{})
	h.plat.entered = make(chan string, 16)
	h.start()
	for s := range h.plat.entered {
		if s == status.StepUsers {
			break
		}
	}
	h.stop()
	delete(h.plat.block, status.StepUsers)

	h.start() // attempt 3 again, and it succeeds
	h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	got := h.imds.all()
	checkSeq(t, got)
	if s := attempts(got); !strings.HasSuffix(s, fmt.Sprintf("applying/%[1]d#3 provisioned/%[1]d#3", g)) ||
		countAttempt(got, status.StateFailed, g, 2) != 1 || countAttempt(got, status.StateApplying, g, 3) != 2 {
		t.Errorf("reports = %s", s)
	}
	if n := countAttempt(got, status.StateProvisioned, g, 3); n != 1 {
		t.Errorf("%d provisioned reports at attempt 3", n)
	}
	// A start neither retries a generation applied nor re-applies it.
	h.start()
	h.imds.waitFor("starting after the success", func(rs []status.Report, _ []request) bool { return len(rs) > len(got) })
	h.stop()
	st, _ := LoadState(h.stateDir)
	if st.retryOnStart() || st.Apply.Attempt != 3 {
		t.Errorf("state after success: apply %+v", st.Apply)
	}
}

// TestRetrySupersededWhileWaiting: while a failed generation waits out its
// retry (an hour here), the long-poll still takes a newer generation at
// once, which is applied as its own attempt 1.
func TestRetrySupersededWhileWaiting(t *testing.T) {
	h := newHarness(t)
	f := withFlakyUsers(h, -1, 0, func(int) time.Duration { return time.Hour })
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitFor("attempt 1 failed", func(rs []status.Report, _ []request) bool {
		return countAttempt(rs, status.StateFailed, g, 1) == 1
	})
	f.failures.Store(0)
	g2 := h.imds.publish(reconfDoc)
	h.imds.waitReport(status.StateProvisioned, g2)
	want := fmt.Sprintf("starting/0 waiting/0 applying/%[1]d#1 failed/%[1]d#1 applying/%[2]d#1 provisioned/%[2]d#1", g, g2)
	if s := attempts(h.imds.all()); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
}
