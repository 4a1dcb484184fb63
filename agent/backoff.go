package agent

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"time"
)

// backoff computes waits between failed attempts: exponential with full
// jitter (a uniform draw in [0, min(cap, base*2^n)]), never below a floor
// so a failing loop cannot spin, and never below a server's Retry-After.
type backoff struct {
	base, max time.Duration
	n         int
}

// minWait keeps a failing loop from spinning even when the jitter draws 0.
const minWait = 10 * time.Millisecond

// refusedMax caps the wait after a refused connection. A refusal means the
// host answered and only the IMDS process is missing (it is restarting):
// asking again costs the host one RST, and the agent resumes within about
// a second of the IMDS coming back instead of sleeping out a 10 s draw.
// Timeouts, unreachable networks and 429/5xx keep the full cap.
const refusedMax = time.Second

// after returns how long to wait after the failure err: next with the
// server's Retry-After, its ceiling lowered to refusedMax for a refused
// connection.
func (b *backoff) after(err error) time.Duration {
	if errors.Is(err, syscall.ECONNREFUSED) {
		limit := min(b.max, refusedMax)
		d := b.nextUpTo(retryAfterOf(err), limit)
		// A run of refusals (an IMDS restarting) does not raise the
		// ceiling past what a refusal uses: the first other failure once
		// the IMDS is back (a connection reset while it starts) then
		// waits about as long as a refusal, not a draw of up to the full
		// cap that the refusals alone escalated to.
		b.n = min(b.n, levelOf(b.base, limit))
		return d
	}
	return b.next(retryAfterOf(err))
}

// levelOf is the smallest n with base*2^n at or above limit.
func levelOf(base, limit time.Duration) int {
	n := 0
	for base > 0 && base<<n < limit && n < 30 {
		n++
	}
	return n
}

// next returns how long to wait before the next attempt. retryAfter, when
// positive, is the server's Retry-After and is honoured as a lower bound.
func (b *backoff) next(retryAfter time.Duration) time.Duration {
	return b.nextUpTo(retryAfter, b.max)
}

// nextUpTo is next with the ceiling capped at limit.
func (b *backoff) nextUpTo(retryAfter, limit time.Duration) time.Duration {
	ceil := b.base << min(b.n, 30)
	if ceil <= 0 || ceil > limit {
		ceil = limit
	}
	if b.n < 31 {
		b.n++
	}
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	d = max(d, minWait)
	if retryAfter > 0 {
		// Spread clients that were all told the same Retry-After a little.
		d = max(d, retryAfter+time.Duration(rand.Int64N(int64(retryAfter/10)+1)))
	}
	return d
}

// reset starts over after a success.
func (b *backoff) reset() { b.n = 0 }
