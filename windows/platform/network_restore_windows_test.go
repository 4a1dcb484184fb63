package platform

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/state"
)

// TestApplyRecordsForRestore: every document's interfaces are recorded,
// by MAC, before they are applied, a later document's replacing the same
// MAC's and keeping the others; Restore applies the record again. No
// adapter has these MACs, so nothing is changed (this runs under Wine and
// on a real Windows alike): both calls fail naming each interface, which
// shows Restore tried every recorded one.
func TestApplyRecordsForRestore(t *testing.T) {
	dir := tempDir(t)
	n := &networkConfigurator{stateDir: dir, runner: &recordRunner{}, log: testLogger(t)}
	a := config.Interface{MAC: config.MustParseMAC("02:00:00:00:00:0a"), MTU: 1400}
	b := config.Interface{MAC: config.MustParseMAC("02:00:00:00:00:0b"), DHCP4: true}
	if _, err := n.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{a}}); err == nil {
		t.Fatal("ApplyNetwork found an adapter with a made-up MAC")
	}
	a2 := a
	a2.MTU = 1300
	if _, err := n.ApplyNetwork(context.Background(), &config.Network{Interfaces: []config.Interface{b, a2}}); err == nil {
		t.Fatal("ApplyNetwork found an adapter with a made-up MAC")
	}
	rec := map[string]config.Interface{}
	if err := state.Load(filepath.Join(dir, appliedFile), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec) != 2 || rec["02:00:00:00:00:0a"].MTU != 1300 || !rec["02:00:00:00:00:0b"].DHCP4 {
		t.Errorf("record %+v; want both interfaces, a's from the later document", rec)
	}
	err := n.Restore(context.Background())
	if err == nil || !strings.Contains(err.Error(), "02:00:00:00:00:0a") || !strings.Contains(err.Error(), "02:00:00:00:00:0b") {
		t.Errorf("Restore: %v; want both recorded interfaces tried", err)
	}
	// A document without a network section changes neither the machine
	// nor the record.
	if _, err := n.ApplyNetwork(context.Background(), &config.Network{}); err != nil {
		t.Errorf("empty network section: %v", err)
	}
	if err := state.Load(filepath.Join(dir, appliedFile), &rec); err != nil || len(rec) != 2 {
		t.Errorf("record after an empty section: %+v, %v", rec, err)
	}
	// Nothing recorded: nothing to do.
	empty := &networkConfigurator{stateDir: tempDir(t), log: testLogger(t)}
	if err := empty.Restore(context.Background()); err != nil {
		t.Errorf("Restore without a record: %v", err)
	}
}

// TestRestorer: the watcher's restore runs once when the watch starts and
// again on a kick; kicks during a run fold into one more run; it stops
// with the watch.
func TestRestorer(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	w := &linkWatcher{log: testLogger(t), restore: func(ctx context.Context) error {
		runs.Add(1)
		<-release
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kick := w.restorer(ctx)
	waitFor(t, func() bool { return runs.Load() == 1 }, "the first run")
	kick() // while the first run blocks: queued
	kick() // folded into the queued one
	release <- struct{}{}
	waitFor(t, func() bool { return runs.Load() == 2 }, "the run a kick asked for")
	release <- struct{}{}
	cancel()
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs; want 2 (two kicks during a run are one)", n)
	}
	if (&linkWatcher{}).restorer(ctx) == nil {
		t.Error("a watcher without restore returned no kick")
	}
}

// waitFor polls cond for up to a minute (no timing is asserted: the bound
// only keeps a broken test from hanging).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 6000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
