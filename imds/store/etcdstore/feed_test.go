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

// collect runs a feed (Feed, Follow) until the test ends and returns its
// events.
func collect[E any](t *testing.T, run func(ctx context.Context, fn func(E)) error) <-chan E {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	evs := make(chan E, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, func(ev E) { evs <- ev })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return evs
}

// feed runs Feed on s and returns its events.
func feed(t *testing.T, s store.Store) <-chan store.Event {
	t.Helper()
	return collect(t, s.Feed)
}

// nextFeed returns the next event that is not a health one (a probe of a
// loaded test machine may time out), waiting up to 10 s for it; with
// within 0 it must be there already.
func nextFeed(t *testing.T, evs <-chan store.Event, within time.Duration) store.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev := <-evs:
			if ev.Type != store.EventHealth {
				return ev
			}
			continue
		default:
		}
		select {
		case ev := <-evs:
			if ev.Type != store.EventHealth {
				return ev
			}
		case <-timeout:
			t.Fatalf("no feed event within %v", within)
			return store.Event{}
		}
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
	if ev := nextFeed(t, evs, 10*time.Second); ev.Type != store.EventResync || len(ev.Records) != 1 || ev.Records[0].ID != "vm-1" || ev.Records[0].Generation != 1 {
		t.Fatalf("resync: %+v", ev)
	}
	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("a2")}); err != nil {
		t.Fatal(err)
	}
	// Delivered before Apply returned.
	if ev := nextFeed(t, evs, 0); ev.Type != store.EventChanged || ev.ID != "vm-1" || ev.Record.Generation != 2 {
		t.Fatalf("publish: %+v", ev)
	}
	r := status.Report{Seq: 1, State: "provisioned", AgentVersion: "t"}
	r.Time.Time = time.Now().UTC().Truncate(time.Millisecond)
	if err := a.AppendStatus(ctx, "vm-1", r); err != nil {
		t.Fatal(err)
	}
	if ev := nextFeed(t, evs, 0); ev.Type != store.EventStatus || ev.ID != "vm-1" || ev.Status == nil || ev.Status.Seq != 1 {
		t.Fatalf("status: %+v", ev)
	}
	// Handed over to host b: gone from host a.
	if _, err := b.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if ev := nextFeed(t, evs, 10*time.Second); ev.Type != store.EventDeleted || ev.ID != "vm-1" {
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
