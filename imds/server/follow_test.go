package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// followedStore wraps a Store the way a shared backend behaves: every
// write is also delivered to a follower (here: straight back into the
// server) before the write returns.
type followedStore struct {
	store.Store
	s *Server
}

func (f *followedStore) Apply(ctx context.Context, id string, c store.Change) (store.Record, error) {
	rec, err := f.Store.Apply(ctx, id, c)
	if err == nil {
		f.s.Sync(rec)
	}
	return rec, err
}

func (f *followedStore) Delete(ctx context.Context, id string) error {
	err := f.Store.Delete(ctx, id)
	if err == nil {
		f.s.Forget(id)
	}
	return err
}

func (f *followedStore) AppendStatus(ctx context.Context, id string, r status.Report) error {
	err := f.Store.AppendStatus(ctx, id, r)
	if err == nil {
		f.s.SyncStatus(id, r)
	}
	return err
}

func TestFollowedIndex(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fs := &followedStore{Store: b}
	s := newTestServer(t, Options{Store: fs, Followed: true})
	fs.s = s
	h := s.GuestHandler()

	// The server's own writes reach the index through the follower.
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

	// Changes made elsewhere (another host) arrive through Sync / Resync.
	doc, _ := json.Marshal(map[string]any{"instanceId": "vm-b", "generation": 7, "hostname": "b"})
	s.Sync(store.Record{ID: "vm-b", Registration: store.Registration{Addresses: []string{"10.0.0.2"}}, Generation: 7, Config: doc})
	if rec := do(h, req{path: api.PathConfig, from: "10.0.0.2", hdr: md}); rec.Code != 200 || rec.Header().Get("ETag") != tag(s, 7) {
		t.Fatalf("synced instance: %d %s", rec.Code, rec.Body.String())
	}
	ch = poll(h, "10.0.0.2", "wait=true&timeout=10", `"7"`)
	parked(t, s, 1)
	s.Resync([]store.Record{{ID: "vm-b", Registration: store.Registration{Addresses: []string{"10.0.0.2"}}, Generation: 7, Config: doc}})
	if _, ok := s.Instance("vm-a"); ok {
		t.Fatal("Resync kept an instance it did not list")
	}
	s.Forget("vm-b")
	if r := waitResult(t, ch, 5*time.Second); r.code != 404 || !strings.Contains(r.body, "unknown instance") {
		t.Fatalf("after Forget: %+v", r)
	}
	if n := len(s.Instances()); n != 0 {
		t.Fatal(fmt.Sprint(n, " instances left"))
	}
}
