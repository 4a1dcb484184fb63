package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/api"
)

// openBolt opens a bbolt store in a temporary directory, closed when the
// test ends.
func openBolt(t testing.TB) *store.Bolt {
	t.Helper()
	b, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// rywBackends open each store backend for a read-your-writes test.
var rywBackends = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"bolt", func(t *testing.T) store.Store { return openBolt(t) }},
	{"etcd", func(t *testing.T) store.Store {
		m := etcdtest.Start(t) // skips without an etcd binary
		es, err := etcdstore.Open(etcdstore.Config{
			Endpoints: []string{m.ClientURL},
			Prefix:    "/t/" + t.Name() + "/",
			HostID:    "host-a",
			Logger:    testLogger(t).With("store", "etcd"),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { es.Close() })
		return es
	}},
}

// laggingFeed delivers each event of its store's feed late, as a follower
// behind a busy or distant etcd does, so that a write returning before its
// change is delivered would be seen.
type laggingFeed struct{ store.Store }

func (f laggingFeed) Feed(ctx context.Context, fn func(store.Event)) error {
	return f.Store.Feed(ctx, func(ev store.Event) {
		time.Sleep(20 * time.Millisecond)
		fn(ev)
	})
}

// A write through the server returns once it is durable and visible on
// this host: a guest GET right after a publish (no sleep, no retry) gets
// the new document, the long-poll parked on the old one has been released
// with it, a long-poll sent after it with the old ETag answers at once,
// and a status report, a re-registration and a delete are in the index
// when their call returns. On both backends: bbolt's feed delivers inside
// the write, etcd's through its watch, which the write waits for; each
// feed here delivers late.
func TestReadYourWrites(t *testing.T) {
	for _, be := range rywBackends {
		t.Run(be.name, func(t *testing.T) {
			s := newTestServer(t, Options{Store: laggingFeed{be.open(t)}})
			h := s.GuestHandler()
			ctx := context.Background()
			mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
			if _, ok := s.Instance("vm-a"); !ok {
				t.Fatal("registration not visible when Register returned")
			}
			if rec := do(h, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}); strings.Contains(rec.Body.String(), "unknown instance") {
				t.Fatalf("guest of a registered instance: %d %s", rec.Code, rec.Body.String())
			}
			old := ""
			for i := 1; i <= 10; i++ {
				ch := poll(h, "10.0.0.1", "wait=true&timeout=30", old)
				parked(t, s, 1)
				g := mustPublish(t, s, "vm-a", `{"hostname":"a"}`)
				want := tag(s, g)
				// Nothing below waits: the publish has returned.
				if rec := do(h, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}); rec.Code != 200 || rec.Header().Get("ETag") != want {
					t.Fatalf("publish %d: GET right after it: %d ETag %s, want 200 %s", i, rec.Code, rec.Header().Get("ETag"), want)
				}
				inst := s.get("vm-a")
				inst.pollMu.Lock()
				left := len(inst.polls)
				inst.pollMu.Unlock()
				if left != 0 {
					t.Fatalf("publish %d: %d long-polls still parked when it returned", i, left)
				}
				if r := <-ch; r.code != 200 || r.etag != want {
					t.Fatalf("publish %d: parked long-poll answered %d %s, want 200 %s", i, r.code, r.etag, want)
				}
				if old != "" {
					rec := do(h, req{path: api.PathConfig + "?wait=true&timeout=30", from: "10.0.0.1", hdr: with(md, "If-None-Match", old)})
					if rec.Code != 200 || rec.Header().Get("ETag") != want {
						t.Fatalf("publish %d: long-poll with the old tag: %d %s", i, rec.Code, rec.Header().Get("ETag"))
					}
				}
				old = want
			}

			if rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: report}); rec.Code != 204 {
				t.Fatal(rec.Code, rec.Body.String())
			}
			if in, _ := s.Instance("vm-a"); in.LastStatus == nil || in.LastStatus.Seq != 1 {
				t.Fatalf("status report not visible when it was accepted: %+v", in.LastStatus)
			}

			mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.9"}})
			if rec := do(h, req{path: api.PathConfig, from: "10.0.0.9", hdr: md}); rec.Code != 200 || rec.Header().Get("ETag") != old {
				t.Fatalf("re-registered address right after Register: %d %s", rec.Code, rec.Body.String())
			}
			if rec := do(h, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}); rec.Code != 404 {
				t.Fatalf("old address right after Register: %d", rec.Code)
			}

			if err := s.Delete(ctx, "vm-a"); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Instance("vm-a"); ok {
				t.Fatal("deleted instance still in the index when Delete returned")
			}
			if rec := do(h, req{path: api.PathConfig, from: "10.0.0.9", hdr: md}); rec.Code != 404 {
				t.Fatalf("guest of a deleted instance: %d", rec.Code)
			}
		})
	}
}
