package agent

import (
	"math/rand/v2"
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

// next returns how long to wait before the next attempt. retryAfter, when
// positive, is the server's Retry-After and is honoured as a lower bound.
func (b *backoff) next(retryAfter time.Duration) time.Duration {
	ceil := b.base << min(b.n, 30)
	if ceil <= 0 || ceil > b.max {
		ceil = b.max
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
