package plan

import (
	"sort"
	"time"

	"github.com/prewarm/prewarm/agent"
)

// Link is the state of one managed interface as the platform last saw it.
type Link struct {
	Index int
	Name  string // the interface alias, e.g. "Ethernet"
	MAC   string // lower case, colon separated
	Up    bool   // media connected and operationally up
}

// LinkEvents compares two snapshots of the managed interfaces (by index)
// and returns the events that lead from prev to cur, ordered by index.
// Windows has no carrier-change counter, so CarrierChanges stays 0.
func LinkEvents(prev, cur map[int]Link, now time.Time) []agent.LinkEvent {
	var idx []int
	seen := map[int]bool{}
	for i := range prev {
		idx, seen[i] = append(idx, i), true
	}
	for i := range cur {
		if !seen[i] {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	var evs []agent.LinkEvent
	for _, i := range idx {
		p, hadP := prev[i]
		c, hasC := cur[i]
		ev := func(k agent.LinkEventKind, l Link) {
			evs = append(evs, agent.LinkEvent{Kind: k, Interface: l.Name, Index: l.Index, MAC: l.MAC, Time: now})
		}
		switch {
		case hadP && !hasC:
			ev(agent.LinkRemoved, p)
		case !hadP && hasC:
			ev(agent.LinkAdded, c)
			if c.Up {
				ev(agent.CarrierBack, c)
			}
		case p.Up && !c.Up:
			ev(agent.CarrierLost, c)
		case !p.Up && c.Up:
			ev(agent.CarrierBack, c)
		}
	}
	return evs
}
