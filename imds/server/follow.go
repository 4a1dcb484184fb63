package server

import (
	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// Sync installs rec, the current state of one instance as the store holds
// it, in the in-memory index and answers the long-polls it satisfies. It
// is how a caller following a shared store (Options.Followed) feeds
// changes made anywhere, this server's own writes included.
func (s *Server) Sync(rec store.Record) {
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
		s.binder.update()
	}
}

// SyncStatus records a status report of instance id that the store
// received (possibly through another server) and wakes admin status
// waiters. Unknown ids are ignored.
func (s *Server) SyncStatus(id string, r status.Report) {
	if inst := s.get(id); inst != nil {
		inst.observeStatus(r)
	}
}

// Forget removes instance id from the index (it was deleted, or moved to
// another host): its parked long-polls are answered 404.
func (s *Server) Forget(id string) {
	if inst := s.unindex(id); inst != nil {
		s.wake(inst)
	}
	if s.binder != nil {
		s.binder.update()
	}
}

// Resync replaces the whole index with recs (a follower's first event, or
// one after it lost track): instances absent from recs are forgotten.
func (s *Server) Resync(recs []store.Record) {
	keep := make(map[string]bool, len(recs))
	for _, r := range recs {
		keep[r.ID] = true
		s.Sync(r)
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
		s.Forget(id)
	}
}
