package status

// checkAttempt adds to fail the rules r's attempt breaks: never negative,
// and only on a report of a generation's apply (applying or its outcome),
// not on an event report.
func checkAttempt(r *Report, fail func(path, reason string)) {
	switch {
	case r.Attempt < 0:
		fail("attempt", "must not be negative")
	case r.Attempt > 0 && (r.Event != "" || r.Generation < 1 || r.State == StateStarting || r.State == StateWaiting):
		fail("attempt", "only on the applying report and the outcome of a generation, not on an event report")
	}
}
