package controller

import (
	"context"
	"sync"
)

// slots caps concurrent refill boots. A claim's cold boot never waits: it
// takes a slot at once, past the cap if need be (a refill boot holds its
// slot until partial-ready, a minute or more under TCG, and a claim must
// not queue behind that), and refills wait until the claims' boots and
// their own fit under the cap again. The high queue serves waiters that
// must go first when slots free up.
type slots struct {
	mu        sync.Mutex
	max, used int
	high, low []chan struct{}
}

func newSlots(max int) *slots { return &slots{max: max} }

// acquire takes a slot, waiting in the high or low queue.
func (s *slots) acquire(ctx context.Context, high bool) error {
	s.mu.Lock()
	if high || (s.used < s.max && len(s.high) == 0 && len(s.low) == 0) {
		s.used++
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if high {
		s.high = append(s.high, ch)
	} else {
		s.low = append(s.low, ch)
	}
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		removed := remove(&s.high, ch) || remove(&s.low, ch)
		s.mu.Unlock()
		if !removed {
			// Handed a slot just as ctx ended: give it back.
			s.release()
		}
		return ctx.Err()
	}
}

// force takes a slot even past the cap (an adopted VM that is booting).
func (s *slots) force() {
	s.mu.Lock()
	s.used++
	s.mu.Unlock()
}

// release gives a slot back to the first waiter, high queue first.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	for s.used < s.max {
		var ch chan struct{}
		switch {
		case len(s.high) > 0:
			ch, s.high = s.high[0], s.high[1:]
		case len(s.low) > 0:
			ch, s.low = s.low[0], s.low[1:]
		default:
			return
		}
		s.used++
		close(ch)
	}
}

// inUse returns the slots taken and the waiters of each queue.
func (s *slots) inUse() (used, high, low int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, len(s.high), len(s.low)
}

func remove(q *[]chan struct{}, ch chan struct{}) bool {
	for i, c := range *q {
		if c == ch {
			*q = append((*q)[:i], (*q)[i+1:]...)
			return true
		}
	}
	return false
}
