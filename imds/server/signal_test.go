package server

import (
	"sync"
	"testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A changeSignal's channel is closed by the first fire after next handed
// it out, not by one before; waiters that asked before one fire share
// its channel; a fire nobody waits for leaves nothing behind.
func TestChangeSignal(t *testing.T) {
	var s changeSignal
	s.fire() // nobody waits
	a := s.next()
	if closed(a) {
		t.Fatal("a fire before next closed next's channel")
	}
	if b := s.next(); b != a {
		t.Fatal("two waiters before a fire got two channels")
	}
	s.fire()
	if !closed(a) {
		t.Fatal("fire left the waiters' channel open")
	}
	c := s.next()
	if closed(c) {
		t.Fatal("next after a fire returned a closed channel")
	}
	s.fire()
	s.fire() // a second fire with no new waiter closes nothing twice
	if !closed(c) {
		t.Fatal("fire left the channel open")
	}

	// Concurrent waiters and firers: every channel handed out before the
	// last fire is closed by it (no lost wake-up, no double close).
	var wg sync.WaitGroup
	chans := make(chan (<-chan struct{}), 800)
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				chans <- s.next()
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				s.fire()
			}
		}()
	}
	wg.Wait()
	s.fire()
	close(chans)
	for ch := range chans {
		if !closed(ch) {
			t.Fatal("a channel handed out before the last fire is open")
		}
	}
}
