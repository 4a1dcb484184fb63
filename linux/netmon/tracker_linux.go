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

// running reports whether the link can carry traffic: administratively
// up, with carrier, and operationally up or unknown, or down while the
// carrier is on. The kernel sets the carrier (and counts its change) at
// once, and the operational state only when its link watch runs, up to a
// second later (it runs at most about once a second): a NIC set up at
// boot shows carrier 1 and operstate down until then (with the carrier
// on, the link watch makes it up, or dormant or testing, which are not
// running). Taking that moment for a link that is down
// made the operational state catching up (the same carrier, the same
// change counter) a carrier that came back: in a VM whose agent started
// within that second, a DHCP renewal (udhcpc's: release, deconfigure,
// discover) of a lease nothing had disturbed.
func (s linkState) running() bool {
	if !s.AdminUp || !s.Carrier {
		return false
	}
	return s.Oper == operUp || s.Oper == operUnknown || s.Oper == operDown
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
