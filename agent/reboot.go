package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// Rebooter restarts the machine, for a document whose reboot policy is
// config.RebootAllowed when a step needs a restart (StepResult's
// RebootRequired: the Windows computer name). The platform step that can
// need one implements it too (Windows: the hostname step); the agent takes
// the first step of the platform that does. An OS none of whose steps ever
// needs a restart (Linux) has none; without one the agent reports
// rebootRequired, as under RebootNever.
type Rebooter interface {
	// BootID names the current boot of the machine: another value after
	// every restart, the same one for every call within a boot.
	BootID() (string, error)
	// Reboot asks the OS to restart the machine and returns once the
	// request is accepted: the agent is stopped by the shutdown later.
	Reboot(ctx context.Context, reason string) error
}

// DefaultRebootWait bounds how long the agent waits to be stopped by the
// shutdown it asked for: past it the reboot did not come (an administrator
// aborted it), and the outcome is reported with rebootRequired.
const DefaultRebootWait = 10 * time.Minute

// RebootState is the reboot the agent asked for, in the state file: the
// reboot happens once per generation, and the outcome reported after it
// counts it.
type RebootState struct {
	// Generation and ETag name the document that asked for it.
	Generation int64  `json:"generation"`
	ETag       string `json:"etag,omitempty"`
	// BootID is the boot the reboot was asked in; RequestedAt when.
	BootID      string    `json:"bootId"`
	RequestedAt time.Time `json:"requestedAt"`
	// Steps are the steps of the apply before the reboot; the outcome
	// after it adds their times and changes to the apply after it.
	Steps []status.Step `json:"steps,omitempty"`
	// RebootMS is set at the first start in another boot: the time from
	// the request to that start.
	RebootMS *int64 `json:"rebootMs,omitempty"`
}

// errRebootDidNotHappen: the machine was not restarted in time.
var errRebootDidNotHappen = errors.New("the machine did not restart")

// noteReboot runs at start: a reboot asked for in an earlier boot has
// happened, and its time is recorded for the outcome.
func (a *Agent) noteReboot() {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.st.Reboot
	if rs == nil || rs.RebootMS != nil || a.rebooter() == nil {
		return
	}
	boot, err := a.rebooter().BootID()
	if err != nil {
		a.log.Warn("read the boot ID: cannot tell whether the reboot happened", "generation", rs.Generation, "err", err)
		return
	}
	if boot == rs.BootID {
		return
	}
	ms := max(time.Since(rs.RequestedAt).Milliseconds(), 0)
	rs.RebootMS = &ms
	if err := a.st.save(a.opts.StateDir); err != nil {
		a.log.Error("persist state", "err", err)
	}
	a.log.Info("restarted for a generation: applying it again to report it", "generation", rs.Generation, "ms", ms)
}

// rebootStep decides, after the apply of doc (generation gen, ETag tag),
// whether the machine restarts before the outcome is reported, and
// completes the outcome's steps:
//
//   - after the restart this generation asked for: the steps before it
//     and after it merged, and a "reboot" step with the restart's time;
//   - a step needs a restart, the policy allows one, the platform can and
//     none was asked for this generation yet: the request is recorded,
//     then made, and rebooting is true (no outcome: the next boot reports
//     it). The agent waits to be stopped by the shutdown (ctx), at most
//     wait; a reboot that does not come is reported as rebootRequired;
//   - otherwise the steps as they are (rebootRequired says the rest).
//
// A failed request fails the generation (a "reboot" step with its error).
func (a *Agent) rebootStep(ctx context.Context, doc *config.Document, gen int64, tag string, steps []status.Step, reboot bool, failures []string, wait time.Duration) (_ []status.Step, _ bool, _ []string, rebooting bool) {
	a.mu.Lock()
	rs := a.st.Reboot
	a.mu.Unlock()
	if rs != nil && (rs.Generation != gen || rs.ETag != tag) {
		rs = nil // another document's; the outcome clears it
	}
	switch {
	case rs != nil && rs.RebootMS != nil:
		steps = append(mergeSteps(rs.Steps, steps), status.Step{Name: status.StepReboot, OK: true, MS: *rs.RebootMS, Changed: true})
		return steps, reboot, failures, false
	case rs != nil:
		// Asked in this boot, and this process is still (or again) here:
		// never a second request for one generation.
		a.log.Warn("a reboot was asked for this generation and has not happened: reporting rebootRequired", "generation", gen, "requestedAt", rs.RequestedAt)
		return mergeSteps(rs.Steps, steps), reboot, failures, false
	case !reboot || len(failures) > 0 || doc.RebootPolicy() != config.RebootAllowed || a.rebooter() == nil:
		return steps, reboot, failures, false
	}
	fail := func(err error) ([]status.Step, bool, []string, bool) {
		msg := a.red.String(err.Error())
		a.log.Error("reboot failed", "generation", gen, "err", err)
		steps = append(steps, status.Step{Name: status.StepReboot, OK: false, Error: msg})
		return steps, reboot, append(failures, status.StepReboot+": "+msg), false
	}
	boot, err := a.rebooter().BootID()
	if err != nil {
		return fail(fmt.Errorf("read the boot ID: %w", err))
	}
	rec := &RebootState{Generation: gen, ETag: tag, BootID: boot, RequestedAt: time.Now(), Steps: steps}
	a.mu.Lock()
	a.st.Reboot = rec
	err = a.st.save(a.opts.StateDir)
	a.mu.Unlock()
	if err != nil {
		// Without the record the next boot could not tell this reboot
		// from none: no reboot.
		return fail(fmt.Errorf("record the reboot: %w", err))
	}
	a.log.Info("restarting the machine: a step takes effect only after a restart and the document allows one", "generation", gen)
	if err := a.rebooter().Reboot(ctx, fmt.Sprintf("Prewarm: generation %d takes effect after a restart", gen)); err != nil {
		return fail(err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return steps, reboot, failures, true
	case <-t.C:
	}
	a.log.Warn("reporting rebootRequired", "generation", gen, "err", fmt.Errorf("%w within %s of the request", errRebootDidNotHappen, wait))
	return steps, reboot, failures, false
}

// rebooter returns the platform's Rebooter, nil if it has none.
func (a *Agent) rebooter() Rebooter {
	for _, part := range []any{a.p.Hostname, a.p.Timezone, a.p.Users, a.p.Network, a.p.DHCP, a.p.Links} {
		if r, ok := part.(Rebooter); ok {
			return r
		}
	}
	return nil
}

// mergeSteps returns after with each step's time and change added from the
// step of the same name in before.
func mergeSteps(before, after []status.Step) []status.Step {
	out := make([]status.Step, len(after))
	for i, s := range after {
		for _, b := range before {
			if b.Name == s.Name {
				s.MS += b.MS
				s.Changed = s.Changed || b.Changed
			}
		}
		out[i] = s
	}
	return out
}

// rebootWait is how long rebootStep waits for the shutdown (tests shorten
// it).
var rebootWait = DefaultRebootWait
