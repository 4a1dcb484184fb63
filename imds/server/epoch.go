package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The guest API's ETag of a document is "<generation>.<epoch>" (api.ETag;
// "<generation>" while a shared store is not reached yet): the epoch
// (store.Store.Epoch) tells a generation of this store from the same
// number of another one. A store that was reset or recovered has a new
// epoch, so an agent's tag from before is never current there
// (api.IfNoneMatch.Matches):
// its long-poll answers at once and it re-reads.
//
// A restored older backup keeps the epoch but its generations are behind
// what guests have seen. A guest whose If-None-Match carries this epoch
// and a generation above its instance's current one shows that: the
// server logs it (once per instance) and raises the instance's generation
// floor in the store, so that the next publish is numbered above what the
// guest has seen and the agent takes it as new. Until then the guest's tag
// counts as current (api.IfNoneMatch.Matches): it is never handed the
// older document.

// maxClaimedGeneration bounds a guest's claim: above it the claim is
// ignored, so generations stay exact in any JSON reader (below 2^53) and
// a lying guest can only move its own instance's counter, within bounds.
const maxClaimedGeneration = 1 << 52

// aheadState is what one instance's guest has shown of generations above
// the current one.
type aheadState struct {
	mu     sync.Mutex
	floor  int64 // the highest floor raised
	warned bool
	failed bool // a raise failed and was logged; logged again once one succeeds
}

// noteAhead handles a guest that showed generation have of this store's
// epoch while its instance is at cur (have > cur): the store was restored
// from an older backup. It raises the instance's generation floor to have
// at most once per claimed value and warns once per instance; the poll
// itself waits for that next publish.
func (s *Server) noteAhead(ctx context.Context, inst *instance, have, cur int64) {
	if have > maxClaimedGeneration {
		s.log.Debug("guest claims a generation past the bound; ignored", "instance", inst.id, "claimed", have, "bound", int64(maxClaimedGeneration))
		return
	}
	a := &inst.ahead
	a.mu.Lock()
	defer a.mu.Unlock()
	if have <= a.floor {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.st.RaiseGeneration(ctx, inst.id, have); err != nil {
		// Tried again at the guest's next request; logged once.
		lv := slog.LevelDebug
		if !a.failed {
			a.failed, lv = true, slog.LevelWarn
		}
		s.log.Log(ctx, lv, "cannot raise the generation floor of an instance whose guest is ahead of the store", "instance", inst.id, "guest", have, "store", cur, "err", err)
		return
	}
	a.floor, a.failed = have, false
	if !a.warned {
		a.warned = true
		s.log.Warn("guest has seen a later generation of this store than it holds: was an older backup restored? the next publish is numbered above it",
			"instance", inst.id, "guest", have, "store", cur)
	}
}
