// Package linktrack turns what a platform sees of its links into the
// agent's link events: the one set of rules both the Linux and the Windows
// watcher follow. A platform reads its links its own way (rtnetlink or
// /sys/class/net on Linux, iphlpapi on Windows) and hands each state to a
// Tracker; the Tracker says what happened. A link is known by its index
// from the first time it is seen, managed or not; only managed links make
// events. A flap is a carrier going down and up, or, where the OS keeps a
// carrier-change counter (Linux), that counter rising while the carrier is
// up: the kernel rate-limits carrier-down notices, so a short bounce can
// arrive as one message with the counter up by 2.
package linktrack

import (
	"slices"
	"time"

	"github.com/prewarm/prewarm/agent"
)

// Link is what a platform knows of one link at one moment.
type Link struct {
	Index int
	Name  string
	MAC   string // lower case, colon separated
	// Up says the link can carry traffic (Linux: administratively up, with
	// carrier, operationally up or unknown, or down while the kernel has
	// yet to update it after the carrier came; Windows: connected and up).
	Up bool
	// Changes is the carrier-change counter, where the OS keeps one; 0
	// elsewhere, and then it never counts as a flap.
	Changes uint32
	// Managed says the agent manages the link: only managed links make
	// events. The platform decides it (by name, never loopback...).
	Managed bool
}

// Tracker remembers the links and turns new states into events. It holds
// no goroutines and no sockets, so tests drive it directly; it is not safe
// for concurrent use.
type Tracker struct {
	links map[int]Link
	now   func() time.Time
}

// New returns a Tracker that knows no link yet.
func New() *Tracker {
	return &Tracker{links: map[int]Link{}, now: time.Now}
}

func (t *Tracker) event(kind agent.LinkEventKind, l Link) agent.LinkEvent {
	return agent.LinkEvent{Kind: kind, Interface: l.Name, Index: l.Index, MAC: l.MAC, CarrierChanges: l.Changes, Time: t.now()}
}

// Seed records links without reporting them: the state when the watch
// began.
func (t *Tracker) Seed(all []Link) {
	for _, l := range all {
		t.links[l.Index] = l
	}
}

// Update records one state of a link (a notification or an entry of a
// full listing) and returns the events it means.
func (t *Tracker) Update(l Link) []agent.LinkEvent {
	old, known := t.links[l.Index]
	t.links[l.Index] = l
	if !l.Managed {
		return nil
	}
	if !known {
		evs := []agent.LinkEvent{t.event(agent.LinkAdded, l)}
		if l.Up {
			evs = append(evs, t.event(agent.CarrierBack, l))
		}
		return evs
	}
	switch {
	case old.Up && !l.Up:
		return []agent.LinkEvent{t.event(agent.CarrierLost, l)}
	case !old.Up && l.Up:
		return []agent.LinkEvent{t.event(agent.CarrierBack, l)}
	case l.Up && l.Changes != old.Changes:
		// The carrier went away and came back between two states: the
		// kernel's link-event rate limit swallowed the DOWN.
		return []agent.LinkEvent{t.event(agent.CarrierBack, l)}
	}
	return nil
}

// Known returns the state last recorded of the link with index idx.
func (t *Tracker) Known(idx int) (Link, bool) {
	l, ok := t.links[idx]
	return l, ok
}

// Behind reports whether the current state cur of a managed link differs
// from the one last recorded for it in what makes events: its
// carrier-change counter, where the OS keeps one (every carrier change
// moves it at once, while Linux's link notices and operational state lag
// by up to a second), else whether it is up. A platform reads cur afresh
// (Linux: a netlink dump), so true means an event is still to come. A link
// not recorded under that index and name is not behind.
func (t *Tracker) Behind(cur Link) bool {
	if !cur.Managed {
		return false
	}
	old, ok := t.links[cur.Index]
	if !ok || old.Name != cur.Name {
		return false // a new link: not a change of one in use
	}
	if cur.Changes != 0 || old.Changes != 0 {
		return old.Changes != cur.Changes
	}
	return old.Up != cur.Up
}

// Remove records that a link is gone and returns the event it means. l
// needs only its Index; a Link without a Name stands for the state last
// recorded.
func (t *Tracker) Remove(l Link) []agent.LinkEvent {
	old, known := t.links[l.Index]
	if !known {
		return nil
	}
	delete(t.links, l.Index)
	if l.Name == "" {
		l = old
	}
	if !l.Managed {
		return nil
	}
	return []agent.LinkEvent{t.event(agent.LinkRemoved, l)}
}

// Sync applies a full listing: every link in it, and the removal of every
// known link missing from it, in the order of their indexes.
func (t *Tracker) Sync(all []Link) []agent.LinkEvent {
	cur := make(map[int]Link, len(all))
	for _, l := range all {
		cur[l.Index] = l
	}
	idx := make([]int, 0, len(cur)+len(t.links))
	for i := range cur {
		idx = append(idx, i)
	}
	for i := range t.links {
		if _, ok := cur[i]; !ok {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	var evs []agent.LinkEvent
	for _, i := range idx {
		if l, ok := cur[i]; ok {
			evs = append(evs, t.Update(l)...)
		} else {
			evs = append(evs, t.Remove(Link{Index: i})...)
		}
	}
	return evs
}
