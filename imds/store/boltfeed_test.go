package store

import (
	"context"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// The bbolt feed starts with a resync and delivers every change, in
// commit order, to every running Feed before the write returns; a Feed
// whose ctx ended gets nothing more.
func TestBoltFeed(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}}, Publish: stamp(`"hostname":"a"`)}); err != nil {
		t.Fatal(err)
	}
	type feedRun struct {
		evs    []Event
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func() *feedRun {
		fctx, cancel := context.WithCancel(ctx)
		f := &feedRun{cancel: cancel, done: make(chan struct{})}
		ready := make(chan struct{})
		go func() {
			defer close(f.done)
			s.Feed(fctx, func(ev Event) {
				f.evs = append(f.evs, ev) // one goroutine at a time
				if ev.Type == EventResync {
					close(ready)
				}
			})
		}()
		<-ready
		return f
	}
	f1, f2 := start(), start()
	if ev := f1.evs[0]; ev.Type != EventResync || len(ev.Records) != 1 || ev.Records[0].Generation != 1 {
		t.Fatalf("resync: %+v", ev)
	}
	if _, err := s.Apply(ctx, "a", Change{Publish: stamp(`"hostname":"a2"`)}); err != nil {
		t.Fatal(err)
	}
	r := status.Report{Seq: 1, Time: status.Time{Time: time.Now()}, State: "waiting"}
	if err := s.AppendStatus(ctx, "a", r); err != nil {
		t.Fatal(err)
	}
	f2.cancel()
	<-f2.done
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Failed writes are no change.
	if _, err := s.Apply(ctx, "nobody", Change{Publish: stamp(`"hostname":"x"`)}); err == nil {
		t.Fatal("publish to an unknown id succeeded")
	}
	f1.cancel()
	<-f1.done
	want := []EventType{EventResync, EventChanged, EventStatus, EventDeleted}
	if len(f1.evs) != len(want) {
		t.Fatalf("feed 1: %d events, want %d: %+v", len(f1.evs), len(want), f1.evs)
	}
	for i, ev := range f1.evs {
		if ev.Type != want[i] {
			t.Fatalf("feed 1 event %d: %v, want %v", i, ev.Type, want[i])
		}
	}
	if ev := f1.evs[1]; ev.ID != "a" || ev.Record.Generation != 2 {
		t.Fatalf("publish event: %+v", ev)
	}
	if ev := f1.evs[2]; ev.Status == nil || ev.Status.Seq != 1 {
		t.Fatalf("status event: %+v", ev)
	}
	if len(f2.evs) != 3 {
		t.Fatalf("feed 2 (cancelled before the delete): %d events, want 3", len(f2.evs))
	}
}
