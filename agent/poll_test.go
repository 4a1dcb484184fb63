package agent

import (
	"errors"
	"time"
)

// pollUntil checks cond every few milliseconds until it holds or
// waitLimit passes. It is for conditions with no event to wait on (a file's
// content); the interval is not an assertion.
func pollUntil(cond func() bool) error {
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
