package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prewarm/prewarm/internal/gctune"
)

// awaitTuned runs collections, at most 5 s, until the tuner has moved
// GOGC off the runtime's 100 (it runs after a collection), and fails
// unless it is then gcPolicy's, at least its Percent.
func awaitTuned(t *testing.T, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); gctune.Current() == 100 && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if g := gctune.Current(); g == 100 || g < gcPolicy.Percent {
		t.Errorf("%s: collector at %d %%, want the tuner's (at least %d)", what, g, gcPolicy.Percent)
	}
}

// serve tunes the collector (gcPolicy) unless the environment sets GOGC,
// which then rules: the runtime has read it, and serve leaves it alone.
func TestServeTunesGCUnlessGOGCIsSet(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	stop := tuneGC(func(k string) (string, bool) { return "200", k == "GOGC" })
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if g := gctune.Current(); g != 100 {
		t.Errorf("GOGC set: collector at %d %%, want the runtime's own (100 here)", g)
	}
	stop()

	stop = tuneGC(func(string) (string, bool) { return "", false })
	defer stop()
	awaitTuned(t, "GOGC unset")
}

// An empty GOGC is no operator's value: the runtime reads it as unset
// (GOGC=100), so serve tunes the collector as when it is unset.
func TestServeTunesGCWhenGOGCIsEmpty(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	stop := tuneGC(func(k string) (string, bool) { return "", k == "GOGC" })
	defer stop()
	awaitTuned(t, "GOGC empty")
}
