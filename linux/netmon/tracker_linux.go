package netmon

import (
	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
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

// tracker feeds link states to the portable linktrack.Tracker, which
// holds the rules; it only says what a Linux state means.
type tracker struct {
	t       *linktrack.Tracker
	managed func(linkState) bool
}

func newTracker(managed func(linkState) bool) *tracker {
	return &tracker{t: linktrack.New(), managed: managed}
}

func (t *tracker) link(s linkState) linktrack.Link {
	return linktrack.Link{Index: s.Index, Name: s.Name, MAC: s.MAC, Up: s.running(), Changes: s.Changes, Managed: t.managed(s)}
}

// apply records one state (a notification or a dump entry) and returns the
// events it means.
func (t *tracker) apply(s linkState) []agent.LinkEvent {
	if s.Deleted {
		return t.t.Remove(t.link(s))
	}
	return t.t.Update(t.link(s))
}

// sync applies a full dump: every link in it, and the removal of every
// known link missing from it.
func (t *tracker) sync(all []linkState) []agent.LinkEvent {
	return t.t.Sync(t.links(all))
}

// seed records a dump without reporting it: the state at subscription time.
func (t *tracker) seed(all []linkState) { t.t.Seed(t.links(all)) }

func (t *tracker) links(all []linkState) []linktrack.Link {
	ls := make([]linktrack.Link, len(all))
	for i, s := range all {
		ls[i] = t.link(s)
	}
	return ls
}
