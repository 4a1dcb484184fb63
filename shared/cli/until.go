package cli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// Values of status --wait --until, the same in prewarm-imds and
// prewarm-agent. The states are the status report's (docs/protocol.md
// section 4).
const (
	UntilProvisioned  = "provisioned"
	UntilPartialReady = "partial-ready"
	UntilFailed       = "failed"
	UntilAny          = "any"
)

// UntilValues lists the values of --until, for help and completion.
var UntilValues = []string{UntilProvisioned, UntilPartialReady, UntilFailed, UntilAny}

// Wait is what a status --wait awaits: the state of Until at generation
// Generation or a later one (0: any generation).
type Wait struct {
	Until      string
	Generation int64
}

// CheckUntil returns a usage error unless until is one of UntilValues.
func CheckUntil(until string) error {
	for _, v := range UntilValues {
		if until == v {
			return nil
		}
	}
	return Usagef("--until %q: want provisioned, partial-ready, failed or any", until)
}

// CheckWait checks the options of a status --wait, the same rules in
// prewarm-imds and prewarm-agent: --until is one of UntilValues, the flags
// named in withWait are typed only with --wait (a value the environment
// or the config file gives them applies to waits and is ignored
// otherwise), and --generation and --timeout are not negative.
func CheckWait(f *pflag.FlagSet, wait bool, until string, gen int64, timeout time.Duration, withWait ...string) error {
	if err := CheckUntil(until); err != nil {
		return err
	}
	if !wait {
		for _, fl := range withWait {
			if Typed(f, fl) {
				return Usagef("--%s goes with --wait", fl)
			}
		}
	}
	if until == UntilAny && (Typed(f, "generation") || Typed(f, "published")) {
		return Usagef("--until any takes the next report whatever its generation: --generation and --published do not go with it").
			WithHint("use --after SEQ to say which report is the last one seen")
	}
	if gen < 0 || timeout < 0 {
		return Usagef("--generation and --timeout must not be negative")
	}
	return nil
}

// Decide says whether a report in state at generation ends the wait, and
// with which exit code. For provisioned and partial-ready, a report of the
// generation or a later one in that state ends it with ExitOK
// (provisioned satisfies partial-ready too: a final document never passes
// through partial-ready) and a failed one with ExitGuestFailed; failed
// waits for a failed report (ExitOK); any takes the first report
// (ExitGuestFailed when it is failed).
func (w Wait) Decide(state string, generation int64) (done bool, code int) {
	if w.Until == UntilAny {
		if state == UntilFailed {
			return true, ExitGuestFailed
		}
		return true, ExitOK
	}
	if generation < w.Generation {
		return false, 0
	}
	switch {
	case w.Until == UntilFailed:
		return state == UntilFailed, ExitOK
	case state == UntilFailed:
		return true, ExitGuestFailed
	case state == UntilProvisioned:
		return true, ExitOK
	case state == UntilPartialReady && w.Until == UntilPartialReady:
		return true, ExitOK
	}
	return false, 0
}

// String is the awaited condition, for messages.
func (w Wait) String() string {
	switch {
	case w.Until == UntilAny:
		return "a new report"
	case w.Generation > 0:
		return fmt.Sprintf("%s at generation %d or later", w.Until, w.Generation)
	}
	return w.Until
}
