package linktrack

import (
	"sync"

	"github.com/prewarm/prewarm/agent"
)

// MaxQueued bounds the events held for a slow reader. Past it, Coalesce
// drops the older events of an interface that has a later one of the same
// kind queued: the last event of each kind of each interface is never lost.
const MaxQueued = 256

// Queue holds events between the goroutine that reads the links and the
// one that hands events to the agent, so the reader never blocks on a slow
// agent. The zero value is not usable; see NewQueue.
type Queue struct {
	mu    sync.Mutex
	items []agent.LinkEvent
	// Notify receives a value when events were pushed since the last Take.
	Notify chan struct{}
}

// NewQueue returns an empty queue.
func NewQueue() *Queue { return &Queue{Notify: make(chan struct{}, 1)} }

// Push queues evs, coalescing past MaxQueued, and wakes the taker.
func (q *Queue) Push(evs ...agent.LinkEvent) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	q.items = Bound(append(q.items, evs...))
	q.mu.Unlock()
	select {
	case q.Notify <- struct{}{}:
	default:
	}
}

// Len returns how many events are queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Take returns every queued event and empties the queue.
func (q *Queue) Take() []agent.LinkEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items
	q.items = nil
	return it
}

// Bound returns evs as it is while it holds at most MaxQueued events, else
// coalesced.
func Bound(evs []agent.LinkEvent) []agent.LinkEvent {
	if len(evs) <= MaxQueued {
		return evs
	}
	return Coalesce(evs)
}

// Coalesce keeps, per interface, only its last event of each kind, in
// order.
func Coalesce(in []agent.LinkEvent) []agent.LinkEvent {
	type key struct {
		idx  int
		kind agent.LinkEventKind
	}
	last := map[key]int{}
	for i, e := range in {
		last[key{e.Index, e.Kind}] = i
	}
	out := in[:0:0]
	for i, e := range in {
		if last[key{e.Index, e.Kind}] == i {
			out = append(out, e)
		}
	}
	return out
}
