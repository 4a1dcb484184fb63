package plan

import "github.com/prewarm/prewarm/agent"

// Result assembles an agent.StepResult from the changes a step made.
type Result struct {
	r agent.StepResult
}

// Did records one change; reboot marks a change that takes full effect only
// after a restart.
func (b *Result) Did(action string, reboot bool) {
	b.r.Changed = true
	b.r.Actions = append(b.r.Actions, action)
	if reboot {
		b.r.RebootRequired = true
	}
}

// Pending marks a restart as still required for an earlier change, without
// a change now (a hostname set by an earlier run, not yet active).
func (b *Result) Pending() { b.r.RebootRequired = true }

// Merge adds another step part's result.
func (b *Result) Merge(o agent.StepResult) {
	b.r.Changed = b.r.Changed || o.Changed
	b.r.RebootRequired = b.r.RebootRequired || o.RebootRequired
	b.r.Actions = append(b.r.Actions, o.Actions...)
}

// StepResult returns the assembled result.
func (b *Result) StepResult() agent.StepResult { return b.r }
