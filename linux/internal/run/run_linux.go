package run

import "github.com/prewarm/prewarm/internal/run"

// The runner is internal/run's, shared with Windows. These names only keep
// linux/network building until it imports internal/run itself.
type (
	Cmd       = run.Cmd
	Runner    = run.Runner
	ExitError = run.ExitError
	Exec      = run.Exec
)

// ErrNotFound is run.ErrNotFound.
var ErrNotFound = run.ErrNotFound
