package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// The store's change feed (store.Store.Feed) is the only writer of the
// in-memory index. A change made through this server, through another host
// of a shared store or straight into it reaches the index the same way, in
// the store's order; and since the store's writes return only once the
// feed has delivered them, a publish returns once it is durable and
// visible to this host's guests and long-polls.

// startFeed runs the store's feed into the index until stopFeed, and
// returns once the index holds the store's state (its first resync) or the
// store is known to be unreachable (a shared store: the server then starts
// empty and degraded, and fills its index when the store answers).
func (s *Server) startFeed() error {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	readyOnce := func() {
		select {
		case <-ready:
		default:
			close(ready)
		}
	}
	done, errc := make(chan struct{}), make(chan error, 1)
	s.feedStop, s.feedDone = cancel, done
	go func() {
		defer close(done)
		err := s.st.Feed(ctx, func(ev store.Event) {
			s.follow(ev)
			if ev.Type == store.EventResync || ev.Type == store.EventHealth {
				readyOnce()
			}
		})
		if ctx.Err() == nil {
			errc <- err
		}
	}()
	var stop <-chan struct{}
	if s.opts.StartContext != nil {
		stop = s.opts.StartContext.Done()
	}
	select {
	case <-ready:
		return nil
	case <-stop:
		cancel()
		<-done
		return fmt.Errorf("follow the store: %w", context.Cause(s.opts.StartContext))
	case err := <-errc:
		cancel()
		if err == nil {
			err = errors.New("feed ended")
		}
		return fmt.Errorf("follow the store: %w", err)
	}
}

// stopFeed ends the feed and waits for it.
func (s *Server) stopFeed() {
	if s.feedStop != nil {
		s.feedStop()
		<-s.feedDone
	}
}

// follow applies one event of the store's feed to the index.
func (s *Server) follow(ev store.Event) {
	switch ev.Type {
	case store.EventResync:
		s.resync(ev.Records)
		s.log.Info("registry loaded", "instances", len(ev.Records))
	case store.EventChanged:
		s.sync(ev.Record)
	case store.EventDeleted:
		s.forget(ev.ID)
	case store.EventStatus:
		if ev.Status != nil {
			s.syncStatus(ev.ID, *ev.Status)
		}
	case store.EventHealth:
		s.SetStoreHealth(ev.Err)
	}
	s.fleet.follow(ev)
}

// sync installs rec, the current state of one instance as the store holds
// it, in the index and answers the long-polls it satisfies.
func (s *Server) sync(rec store.Record) {
	inst := s.index(rec)
	if rec.LastStatus != nil {
		inst.statusMu.Lock()
		l := inst.lastStatus
		if l == nil || l.Seq != rec.LastStatus.Seq || !l.Time.Equal(rec.LastStatus.Time.Time) {
			inst.statusMu.Unlock()
			inst.observeStatus(*rec.LastStatus)
		} else {
			inst.statusMu.Unlock()
		}
	}
	s.wake(inst)
	if s.binder != nil {
		s.binder.Update()
	}
}

// syncStatus records a status report of instance id and wakes admin status
// waiters. Unknown ids are ignored.
func (s *Server) syncStatus(id string, r status.Report) {
	if inst := s.get(id); inst != nil {
		inst.observeStatus(r)
	}
}

// forget removes instance id from the index (it was deleted, or moved to
// another host): its parked long-polls are answered 404.
func (s *Server) forget(id string) {
	if inst := s.unindex(id); inst != nil {
		s.wake(inst)
	}
	if s.binder != nil {
		s.binder.Update()
	}
}

// resync replaces the whole index with recs: instances absent from recs
// are forgotten.
func (s *Server) resync(recs []store.Record) {
	keep := make(map[string]bool, len(recs))
	for _, r := range recs {
		keep[r.ID] = true
		s.sync(r)
	}
	s.mu.RLock()
	var gone []string
	for id := range s.byID {
		if !keep[id] {
			gone = append(gone, id)
		}
	}
	s.mu.RUnlock()
	for _, id := range gone {
		s.forget(id)
	}
}
