package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/status"
)

// feed runs Feed on s and returns its events.
func feed(t *testing.T, s store.Store) <-chan store.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	evs := make(chan store.Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Feed(ctx, func(ev store.Event) { evs <- ev })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return evs
}

func nextFeed(t *testing.T, evs <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev := <-evs:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no feed event within 10s")
		return store.Event{}
	}
}

// TestFeedIsTheHostsView: Feed is this host's view of Follow: a resync of
// its own instances, a handover away as a delete, and each write is in the
// feed when the write returns.
func TestFeedIsTheHostsView(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	b := open(t, []string{m.ClientURL}, "host-b")
	if _, err := b.Apply(ctx, "vm-b", store.Change{Register: reg("10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("a")}); err != nil {
		t.Fatal(err)
	}
	evs := feed(t, a)
	if ev := nextFeed(t, evs); ev.Type != store.EventResync || len(ev.Records) != 1 || ev.Records[0].ID != "vm-1" || ev.Records[0].Generation != 1 {
		t.Fatalf("resync: %+v", ev)
	}
	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("a2")}); err != nil {
		t.Fatal(err)
	}
	select { // delivered before Apply returned
	case ev := <-evs:
		if ev.Type != store.EventChanged || ev.ID != "vm-1" || ev.Record.Generation != 2 {
			t.Fatalf("publish: %+v", ev)
		}
	default:
		t.Fatal("publish not in the feed when Apply returned")
	}
	r := status.Report{Seq: 1, State: "provisioned", AgentVersion: "t"}
	r.Time.Time = time.Now().UTC().Truncate(time.Millisecond)
	if err := a.AppendStatus(ctx, "vm-1", r); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if ev.Type != store.EventStatus || ev.ID != "vm-1" || ev.Status == nil || ev.Status.Seq != 1 {
			t.Fatalf("status: %+v", ev)
		}
	default:
		t.Fatal("status not in the feed when AppendStatus returned")
	}
	// Handed over to host b: gone from host a.
	if _, err := b.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if ev := nextFeed(t, evs); ev.Type != store.EventDeleted || ev.ID != "vm-1" {
		t.Fatalf("handover: %+v", ev)
	}
}

// TestWriteFailsWhileFeedLags: a write whose change the feed does not
// deliver within the request timeout fails with store.ErrNotVisible
// instead of returning as if the caller's index showed it; it is durable.
func TestWriteFailsWhileFeedLags(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	release, ready := make(chan struct{}), make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Feed(fctx, func(ev store.Event) {
			if ev.Type == store.EventResync {
				close(ready)
				return
			}
			<-release
		})
	}()
	defer func() { cancel(); <-done }()
	defer close(release)
	<-ready
	start := time.Now()
	_, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("a")})
	if !errors.Is(err, store.ErrNotVisible) {
		t.Fatalf("Apply while the feed lags: %v", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("gave up after %v, before the request timeout", took)
	}
	recs, err := a.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].Generation != 1 {
		t.Fatalf("not durable: %+v %v", recs, err)
	}
}
