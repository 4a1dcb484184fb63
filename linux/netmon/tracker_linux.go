package netmon

import (
	"slices"
	"time"

	"github.com/prewarm/prewarm/agent"
)

// linkState is what the watcher knows of one link.
type linkState struct {
	Index    int
	Name     string
	MAC      string
	AdminUp  bool
	Carrier  bool
	Oper     uint8 // IF_OPER_*
	Changes  uint32
	Loopback bool
	Deleted  bool // an RTM_DELLINK
}

const (
	operUnknown = 0
	operDown    = 2
	operUp      = 6
)

// running reports whether the link can carry traffic.
func (s linkState) running() bool {
	return s.AdminUp && s.Carrier && (s.Oper == operUp || s.Oper == operUnknown)
}

// tracker turns link states into events. It holds no goroutines and no
// sockets, so tests drive it directly.
type tracker struct {
	links   map[int]linkState
	managed func(linkState) bool
	now     func() time.Time
}

func newTracker(managed func(linkState) bool) *tracker {
	return &tracker{links: map[int]linkState{}, managed: managed, now: time.Now}
}

func (t *tracker) event(kind agent.LinkEventKind, s linkState) agent.LinkEvent {
	return agent.LinkEvent{Kind: kind, Interface: s.Name, Index: s.Index, MAC: s.MAC, CarrierChanges: s.Changes, Time: t.now()}
}

// apply records one state (a notification or a dump entry) and returns the
// events it means.
func (t *tracker) apply(s linkState) []agent.LinkEvent {
	old, known := t.links[s.Index]
	if s.Deleted {
		if !known {
			return nil
		}
		delete(t.links, s.Index)
		if s.Name == "" {
			s = old
		}
		if !t.managed(s) {
			return nil
		}
		return []agent.LinkEvent{t.event(agent.LinkRemoved, s)}
	}
	t.links[s.Index] = s
	if !t.managed(s) {
		return nil
	}
	if !known {
		evs := []agent.LinkEvent{t.event(agent.LinkAdded, s)}
		if s.running() {
			evs = append(evs, t.event(agent.CarrierBack, s))
		}
		return evs
	}
	wasUp, isUp := old.running(), s.running()
	switch {
	case wasUp && !isUp:
		return []agent.LinkEvent{t.event(agent.CarrierLost, s)}
	case !wasUp && isUp:
		return []agent.LinkEvent{t.event(agent.CarrierBack, s)}
	case isUp && s.Changes != old.Changes:
		// The carrier went away and came back between two messages: the
		// kernel's link-event rate limit swallowed the DOWN.
		return []agent.LinkEvent{t.event(agent.CarrierBack, s)}
	}
	return nil
}

// sync applies a full dump: every link in it, and the removal of every
// known link missing from it.
func (t *tracker) sync(all []linkState) []agent.LinkEvent {
	var evs []agent.LinkEvent
	seen := map[int]bool{}
	for _, s := range all {
		seen[s.Index] = true
		evs = append(evs, t.apply(s)...)
	}
	idx := make([]int, 0, len(t.links))
	for i := range t.links {
		if !seen[i] {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		evs = append(evs, t.apply(linkState{Index: i, Deleted: true})...)
	}
	return evs
}

// seed records a dump without reporting it: the state at subscription time.
func (t *tracker) seed(all []linkState) {
	for _, s := range all {
		t.links[s.Index] = s
	}
}
