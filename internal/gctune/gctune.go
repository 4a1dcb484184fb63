// Package gctune sets the Go collector's GOGC after every collection from
// the live heap it found: the heap may grow by a percentage of what is
// live, as GOGC says, but by no less than a floor. The runtime's own floor
// is 4 MiB × GOGC/100, which for a server with a small live heap and a
// high allocation rate (every HTTP request allocates a few KiB in
// net/http) means a collection every few dozen milliseconds; a fixed
// higher GOGC would lift that floor but also let a large heap grow by the
// same high percentage. The tuner gives both: the percentage above the
// floor, the floor below it.
//
//	gctune.Start(gctune.Policy{Percent: 75, MinHeadroom: 8 << 20})
//
// It is the dynamic GOGC of the field (PingCAP's and ByteDance's
// gctuner, Uber's GOGC tuning) reduced to one rule. It runs once after
// each collection (a cleanup of an object made unreachable for it), so an
// idle process pays nothing beyond the runtime's forced collection every
// two minutes.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Policy is the rule: after a collection that found L bytes live, the
// heap may grow to L + max(L × Percent/100, MinHeadroom) before the next.
type Policy struct {
	Percent     int    // GOGC above the floor; > 0
	MinHeadroom uint64 // bytes
}

// maxPercent bounds the GOGC the tuner sets.
const maxPercent = 10_000

// heapMinimum is the runtime's minimum heap goal at GOGC=100 (4 MiB, the
// GC guide's "minimum total heap size"); it scales with GOGC, so a GOGC
// raised for a small live heap raises it too.
const heapMinimum = 4 << 20

// PercentFor is the GOGC that gives a live heap of live bytes p's
// headroom: the runtime's heap goal is max(live × (1 + GOGC/100),
// heapMinimum × GOGC/100), so the GOGC is the smaller of what makes each
// term live + headroom, and never under p.Percent. (The runtime counts
// goroutine stacks and globals into the first term's growth too: a few
// percent more headroom above the floor than the rule says.)
func (p Policy) PercentFor(live uint64) int {
	head := max(live*uint64(p.Percent)/100, p.MinHeadroom)
	pct := (live + head) * 100 / heapMinimum
	if live > 0 {
		pct = min(pct, head*100/live)
	}
	return int(max(min(pct, maxPercent), uint64(p.Percent)))
}

const liveMetric = "/gc/heap/live:bytes"

type tuner struct {
	p       Policy
	mu      sync.Mutex
	sample  [1]metrics.Sample
	last    int
	stopped bool
}

// Start applies p after every collection, from the live heap it found,
// until stop is called; until the first collection the runtime's GOGC
// stands. Call it once, and not when the environment sets GOGC: the
// operator's value then rules. stop leaves GOGC as the tuner last set it.
//
// Start itself only arms the cleanup, so nothing of the tuner runs at a
// service's start (an idle service carries every code page its start
// touches in its RSS); setting GOGC and reading runtime/metrics wait for
// the first collection, whose cleanup does both.
func Start(p Policy) (stop func()) {
	t := &tuner{p: p, last: -1}
	t.sample[0].Name = liveMetric
	t.arm()
	return func() {
		t.mu.Lock()
		t.stopped = true
		t.mu.Unlock()
	}
}

// sentinel is an object made only to become unreachable: its cleanup
// runs after the collection that finds it so. Pointer-free and 32 bytes,
// so not one of the runtime's tiny allocations (whose cleanups may wait
// for a neighbour's).
type sentinel [32]byte

func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		if t.adjust() {
			t.arm()
		}
	}, t)
}

// adjust sets GOGC for the live heap the last collection found, when it
// changed by more than a sixteenth (SetGCPercent recomputes the
// collector's pacing; there is no point doing it for noise). false once
// stopped.
func (t *tuner) adjust() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample[:])
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	pct := t.p.PercentFor(live)
	if t.last > 0 && abs(pct-t.last) <= t.last/16 {
		return true
	}
	t.last = pct
	debug.SetGCPercent(pct)
	return true
}

// Current is the collector's GOGC as the runtime has it now (what the
// tuner last set, the environment's GOGC, or SetGCPercent's): for logs
// and tests.
func Current() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int(s[0].Value.Uint64())
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
