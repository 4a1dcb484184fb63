package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
)

// scriptedFeed is a store whose feed also carries the events a test sends
// (what a shared store's feed brings: resyncs, outages), in order with the
// store's own.
type scriptedFeed struct {
	store.Store
	mu sync.Mutex
	fn func(store.Event)
}

func (f *scriptedFeed) Feed(ctx context.Context, fn func(store.Event)) error {
	return f.Store.Feed(ctx, func(ev store.Event) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.fn = fn
		fn(ev)
	})
}

func (f *scriptedFeed) send(ev store.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn(ev)
}

func stampHostname(host string) store.Stamper {
	return func(id string, gen int64) ([]byte, error) {
		return fmt.Appendf(nil, `{"instanceId":%q,"generation":%d,"hostname":%q}`, id, gen, host), nil
	}
}

// The index follows the store's feed alone: the server's own writes, the
// store's changes made around the server, resyncs and health all reach it
// that way.
func TestFeedIsTheIndexWriter(t *testing.T) {
	b := openBolt(t)
	fs := &scriptedFeed{Store: b}
	s := newTestServer(t, Options{Store: fs})
	h := s.GuestHandler()
	ctx := context.Background()

	// The server's own writes.
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	ch := poll(h, "10.0.0.1", "wait=true&timeout=10", "")
	parked(t, s, 1)
	mustPublish(t, s, "vm-a", `{"hostname":"a"}`)
	if r := waitResult(t, ch, 5*time.Second); r.code != 200 || r.etag != tag(s, 1) {
		t.Fatalf("%+v", r)
	}
	if rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: report}); rec.Code != 204 {
		t.Fatal(rec.Code)
	}
	if in, _ := s.Instance("vm-a"); in.LastStatus == nil || in.LastStatus.State != "provisioned" {
		t.Fatalf("status not followed: %+v", in.LastStatus)
	}

	// A change made in the store around the server (as another host of a
	// shared store, or a control plane, would) is in the index when the
	// store's write returns.
	if _, err := b.Apply(ctx, "vm-b", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.2"}}, Publish: stampHostname("b")}); err != nil {
		t.Fatal(err)
	}
	if rec := do(h, req{path: api.PathConfig, from: "10.0.0.2", hdr: md}); rec.Code != 200 || rec.Header().Get("ETag") != tag(s, 1) {
		t.Fatalf("instance written around the server: %d %s", rec.Code, rec.Body.String())
	}
	ch = poll(h, "10.0.0.2", "wait=true&timeout=10", tag(s, 1))
	parked(t, s, 1)

	// A resync replaces the index.
	recs, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var only []store.Record
	for _, r := range recs {
		if r.ID == "vm-b" {
			only = append(only, r)
		}
	}
	fs.send(store.Event{Type: store.EventResync, Records: only})
	if _, ok := s.Instance("vm-a"); ok {
		t.Fatal("resync kept an instance it did not list")
	}

	// A delete around the server answers the parked poll 404.
	if err := b.Delete(ctx, "vm-b"); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, ch, 5*time.Second); r.code != 404 || !strings.Contains(r.body, "unknown instance") {
		t.Fatalf("after delete: %+v", r)
	}
	if n := len(s.Instances()); n != 0 {
		t.Fatal(n, "instances left")
	}

	// Health comes through the feed too.
	down := errors.New("etcd unavailable")
	fs.send(store.Event{Type: store.EventHealth, Err: down})
	if err := s.StoreHealth(); !errors.Is(err, down) {
		t.Fatalf("StoreHealth = %v", err)
	}
	fs.send(store.Event{Type: store.EventHealth})
	if err := s.StoreHealth(); err != nil {
		t.Fatalf("StoreHealth after recovery = %v", err)
	}
}

// A store whose feed cannot start fails New.
func TestNewFailsWithoutFeed(t *testing.T) {
	b := openBolt(t)
	b.Close()
	if _, err := New(Options{Store: b, Logger: testLogger(t)}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("New on a closed store: %v", err)
	}
}

// silentFeed is a store whose feed never delivers its first event (etcd
// unreachable, its snapshot hanging) until its context ends.
type silentFeed struct{ store.Store }

func (silentFeed) Feed(ctx context.Context, fn func(store.Event)) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestNewGivesUpWithStartContext: New waits for the store's first feed
// event, but no longer than its start context: a SIGTERM during start-up
// ends it at once instead of after the store's own timeouts.
func TestNewGivesUpWithStartContext(t *testing.T) {
	b := openBolt(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		s, err := New(Options{Store: silentFeed{b}, Logger: testLogger(t), StartContext: ctx})
		if err == nil {
			s.Shutdown(context.Background())
		}
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("New after its start context ended: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("New still waiting for the feed 30 s after its start context ended")
	}
}
