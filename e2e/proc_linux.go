package e2e

import (
	"context"
	"testing"

	"github.com/prewarm/prewarm/e2e/netlab"
)

// Proc is a process the harness started and supervises (netlab.Proc):
// its output lines can be waited for, and only it is ever signalled, by
// PID.
type Proc = netlab.Proc

// startProc starts argv with its output in dir/name.log (netlab.StartProc).
func startProc(t testing.TB, dir, name string, viaNsenter bool, argv ...string) (*Proc, error) {
	return netlab.StartProc(t, dir, name, viaNsenter, argv...)
}

// run runs a command to completion within ctx (netlab.Run).
func run(ctx context.Context, argv ...string) (string, error) { return netlab.Run(ctx, argv...) }

// mustRun is run bounded by 30 s, failing the test on error.
func mustRun(t testing.TB, argv ...string) string {
	t.Helper()
	return netlab.MustRun(t, argv...)
}
