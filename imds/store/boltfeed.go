package store

import (
	"context"
	"sync"
)

// boltFeed is the Bolt store's change feed: the functions of the running
// Feeds, each called with every committed change before the write that made
// it returns.
type boltFeed struct {
	// mu is held from a write's commit to its delivery, so that every Feed
	// sees the changes in commit order, a Feed that starts misses none
	// (its resync and the writes are ordered by mu too), and a write
	// returns only once the Feeds have seen it.
	mu   sync.Mutex
	fns  map[int]func(Event)
	next int
}

// Feed implements Store. Every change of this store is made through it,
// so the feed is whole: there is nothing to lose track of and no second
// EventResync.
func (s *Bolt) Feed(ctx context.Context, fn func(Event)) error {
	f := &s.feed
	f.mu.Lock()
	recs, err := s.Load(ctx)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	fn(Event{Type: EventResync, Records: recs})
	if f.fns == nil {
		f.fns = map[int]func(Event){}
	}
	key := f.next
	f.next++
	f.fns[key] = fn
	f.mu.Unlock()

	<-ctx.Done()
	f.mu.Lock()
	delete(f.fns, key)
	f.mu.Unlock()
	return ctx.Err()
}

// deliver calls every running Feed with ev's event; f.mu is held, from
// the change's commit on.
func (f *boltFeed) deliver(ev func() Event) {
	if len(f.fns) > 0 {
		e := ev()
		for _, fn := range f.fns {
			fn(e)
		}
	}
}
