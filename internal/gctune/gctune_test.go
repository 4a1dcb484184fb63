package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	p := Policy{Percent: 75, MinHeadroom: 8 << 20}
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 200},       // nothing live yet: the 4 MiB minimum × 2 = 8 MiB
		{4 << 10, 200}, // a few KiB: the same
		{1 << 20, 225}, // 1 MiB live: goal 9 MiB through the minimum term
		{4 << 20, 200}, // 4 + 8 = 12 MiB: 3 × 4 through either term
		{8 << 20, 100}, // the floor is 100 % of 8 MiB: goal 16 MiB
		{10 << 20, 80}, // 8 MiB of 10
		{32 << 20, 75}, // above the floor: the percentage
		{1 << 40, 75},  // and far above it
		{3 << 20, 266}, // 8/3, rounded down
	} {
		if got := p.PercentFor(c.live); got != c.want {
			t.Errorf("PercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// await runs collections until GOGC is what ok accepts (the tuner runs
// after a collection, on the runtime's cleanup goroutine), at most 5 s.
func await(t *testing.T, what string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(Current()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC is %d", what, Current())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// The tuner follows the live heap on the real runtime: a small heap gets
// the floor (a GOGC far above 75), a large one the percentage, and back.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	orig := debug.SetGCPercent(100)
	p := Policy{Percent: 75, MinHeadroom: 64 << 20}
	stop := Start(p)
	t.Cleanup(func() {
		stop()
		debug.SetGCPercent(orig)
	})
	await(t, "small heap", func(g int) bool { return g > 75 })

	// 256 MiB live: 75 % of it is over the 64 MiB floor.
	big := make([][]byte, 256)
	for i := range big {
		big[i] = make([]byte, 1<<20)
		big[i][0] = 1
	}
	await(t, "256 MiB live", func(g int) bool { return g == 75 })
	runtime.KeepAlive(big)
	big = nil

	await(t, "heap freed", func(g int) bool { return g > 75 })

	// Stopped, it no longer changes GOGC.
	stop()
	debug.SetGCPercent(123)
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if g := Current(); g != 123 {
		t.Errorf("after stop: GOGC %d, want 123 (left alone)", g)
	}
}
