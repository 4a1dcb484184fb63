package netmon

import (
	"sync"

	"github.com/prewarm/prewarm/agent"
)

// maxQueued bounds the events held for a slow reader. Past it, older
// events of an interface that has a later one queued are dropped: the last
// event of each interface is never lost.
const maxQueued = 256

type queue struct {
	mu     sync.Mutex
	items  []agent.LinkEvent
	notify chan struct{}
}

func newQueue() *queue { return &queue{notify: make(chan struct{}, 1)} }

func (q *queue) push(evs ...agent.LinkEvent) {
	if len(evs) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, evs...)
	if len(q.items) > maxQueued {
		q.items = coalesce(q.items)
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *queue) take() []agent.LinkEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items
	q.items = nil
	return it
}

// coalesce keeps, per interface, only its last event of each kind, in order.
func coalesce(in []agent.LinkEvent) []agent.LinkEvent {
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
