package plan

import (
	"testing"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
)

const (
	afInet  = 2
	afInet6 = 23
)

// row is one synthetic NotifyIpInterfaceChange notification, with the
// connected state GetIpInterfaceEntry returned for it.
type row struct {
	index     uint32
	family    uint16
	connected bool
}

func TestFlapCounter(t *testing.T) {
	tests := []struct {
		name string
		rows []row
		want map[uint32]uint32
	}{
		{"first state counts nothing", []row{{4, afInet, true}, {5, afInet, false}}, map[uint32]uint32{4: 0, 5: 0}},
		{"down and up", []row{{4, afInet, true}, {4, afInet, false}, {4, afInet, true}}, map[uint32]uint32{4: 2}},
		{"repeated state is no change", []row{{4, afInet, true}, {4, afInet, true}, {4, afInet, true}}, map[uint32]uint32{4: 0}},
		{"both families: one flap counts once", []row{
			{4, afInet, true}, {4, afInet6, true},
			{4, afInet, false}, {4, afInet6, false},
			{4, afInet6, true}, {4, afInet, true},
		}, map[uint32]uint32{4: 2}},
		{"one family only (IPv6 unbound)", []row{{4, afInet, true}, {4, afInet, false}, {4, afInet, true}, {4, afInet, false}, {4, afInet, true}}, map[uint32]uint32{4: 4}},
		{"interfaces apart", []row{{4, afInet, true}, {7, afInet, true}, {7, afInet, false}}, map[uint32]uint32{4: 0, 7: 1}},
	}
	for _, tt := range tests {
		var c FlapCounter
		for _, r := range tt.rows {
			c.Observe(r.index, r.family, r.connected)
		}
		for idx, want := range tt.want {
			if got := c.Changes(idx); got != want {
				t.Errorf("%s: interface %d changes = %d; want %d", tt.name, idx, got, want)
			}
		}
	}
}

func TestFlapCounterForget(t *testing.T) {
	var c FlapCounter
	c.Observe(4, afInet, true)
	c.Observe(4, afInet, false)
	c.Forget(4, afInet)
	if n := c.Changes(4); n != 0 {
		t.Errorf("after Forget: %d", n)
	}
	// A new interface under the reused index starts afresh.
	if n := c.Observe(4, afInet, false); n != 0 {
		t.Errorf("first state of a reused index counted: %d", n)
	}
}

// TestShortFlapMakesEvent: the link watcher's two reads of the adapters
// both see the NIC up, but the notifications between them saw it go down
// and up. With the count in Link.Changes the tracker reports the flap
// (carrier-back), which the agent answers with a renewal; without it
// (Changes 0, the watcher before this fix) the flap went unseen.
func TestShortFlapMakesEvent(t *testing.T) {
	var c FlapCounter
	link := func() linktrack.Link {
		return linktrack.Link{Index: 4, Name: "Ethernet", MAC: "52:54:00:00:00:04", Up: true, Changes: c.Changes(4), Managed: true}
	}
	c.Observe(4, afInet, true)
	tr := linktrack.New()
	tr.Seed([]linktrack.Link{link()})
	if evs := tr.Sync([]linktrack.Link{link()}); len(evs) != 0 {
		t.Fatalf("no change: %v", evs)
	}
	c.Observe(4, afInet, false) // the short flap, between two polls
	c.Observe(4, afInet, true)
	evs := tr.Sync([]linktrack.Link{link()})
	if len(evs) != 1 || evs[0].Kind != agent.CarrierBack || evs[0].CarrierChanges != 2 {
		t.Fatalf("after a short flap: %+v; want one carrier-back with 2 changes", evs)
	}
	if evs := tr.Sync([]linktrack.Link{link()}); len(evs) != 0 {
		t.Errorf("the same state again: %v", evs)
	}
}
