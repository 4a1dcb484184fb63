package agent

import (
	"log/slog"
	"math/bits"
	"time"
)

// failureLog keeps a failing loop from flooding the log (cloud-init's
// lesson): it logs the first failure, then only when the kind of failure
// changes or the count of consecutive failures reaches a power of two with
// a second gone since its last line (the fast retries after a renewal
// fail every 10 ms while the IMDS is away), and once more when the
// operation succeeds again.
type failureLog struct {
	log    *slog.Logger
	op     string
	kind   string
	count  int
	since  time.Time
	logged time.Time // its last line
}

// floodQuiet is the least time between two lines of one failing loop,
// unless the kind of failure changes.
const floodQuiet = time.Second

// fail records one failure of the given kind and logs it if it is worth it.
func (f *failureLog) fail(kind string, err error, wait time.Duration) {
	f.count++
	now := time.Now()
	if f.count == 1 {
		f.since = now
	}
	if f.count == 1 || kind != f.kind || bits.OnesCount(uint(f.count)) == 1 && now.Sub(f.logged) >= floodQuiet {
		f.log.Warn(f.op+" failed", "kind", kind, "err", err, "failures", f.count, "retryIn", wait.Round(time.Millisecond))
		f.logged = now
	}
	f.kind = kind
}

// ok records a success, logging the recovery after failures.
func (f *failureLog) ok() {
	if f.count > 0 {
		f.log.Info(f.op+" works again", "failures", f.count, "after", time.Since(f.since).Round(time.Millisecond))
	}
	f.count, f.kind = 0, ""
}
