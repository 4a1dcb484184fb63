package controller

import (
	"testing"
	"time"
)

// TestDeadWarmVMFoundByLifecycleEvent: with libvirt's lifecycle events a
// warm VM whose domain stops is replaced on its event, not at the next
// poll (the poll is put an hour away here, so only the event can do it).
func TestDeadWarmVMFoundByLifecycleEvent(t *testing.T) {
	defer func(d time.Duration) { checkEvery = d }(checkEvery)
	checkEvery = time.Hour
	h := start(t, testConfig(t, 1), func(hv *fakeHV) { hv.stops = make(chan string, 4) })
	st := h.waitFor("1 warm VM", warm(1))
	dead := st.VMs[0].Name
	h.hv.crash(dead)
	st = h.waitFor("the dead VM replaced", func(st Status) bool {
		return warm(1)(st) && st.VMs[0].Name != dead
	})
	if _, _, ok := h.hv.domain(dead); ok {
		t.Errorf("the dead VM %s is still defined", dead)
	}
	// A stop event of a VM that is still running (a stale or repeated
	// event) changes nothing: the controller checks the domains itself.
	alive := st.VMs[0].Name
	h.hv.stops <- alive
	h.hv.stops <- "pw-small-unknown"
	time.Sleep(200 * time.Millisecond) // no event for a non-change to await
	if st := h.c.Status(); !warm(1)(st) || st.VMs[0].Name != alive {
		t.Errorf("after stale stop events: %+v, want %s still warm", st.VMs, alive)
	}
}
