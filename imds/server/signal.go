package server

import "sync/atomic"

// changeSignal hands out a channel closed at the next change (next) and
// closes it at that change (fire). The channel is made only when someone
// asks for it, and a change nobody waits for only reads: the per-report
// paths (the fleet view's, an instance's last status) fire on every
// report. Safe for concurrent use, lock-free. A waiter that asks for the
// channel and then reads the state it watches misses no change: a change
// after next closes the channel it got.
type changeSignal struct {
	ch atomic.Pointer[chan struct{}]
}

// next returns a channel closed at the next fire.
func (s *changeSignal) next() <-chan struct{} {
	for {
		if p := s.ch.Load(); p != nil {
			return *p
		}
		ch := make(chan struct{})
		if s.ch.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// fire closes the channel next handed out, if any; call it after the
// change.
func (s *changeSignal) fire() {
	if s.ch.Load() == nil {
		return
	}
	if p := s.ch.Swap(nil); p != nil {
		close(*p)
	}
}
