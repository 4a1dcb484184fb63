package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
)

// downErr is what a shared store answers while it cannot be reached.
type downErr struct{}

func (downErr) Error() string     { return "etcd unavailable: context deadline exceeded" }
func (downErr) Unavailable() bool { return true }

// flakyStore is a bbolt store standing in for a shared one; down makes
// every write fail as unavailable.
type flakyStore struct {
	store.Store
	down atomic.Bool
}

func (f *flakyStore) Apply(ctx context.Context, id string, c store.Change) (store.Record, error) {
	if f.down.Load() {
		return store.Record{}, downErr{}
	}
	return f.Store.Apply(ctx, id, c)
}

func TestStoreDegraded(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := &flakyStore{Store: b}
	s := newTestServer(t, Options{Store: st})
	adm, g := s.AdminHandler(), s.GuestHandler()
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.5"}})
	mustPublish(t, s, "vm-1", `{"hostname":"kept"}`)

	st.down.Store(true)
	s.SetStoreHealth(downErr{})
	if r := do(adm, req{path: api.PathHealthz}); r.Code != http.StatusOK || !strings.Contains(r.Body.String(), `"degraded"`) {
		t.Fatalf("healthz while degraded: %d %s", r.Code, r.Body)
	}
	if r := do(adm, req{path: api.PathMetrics}); !strings.Contains(r.Body.String(), "prewarm_imds_store_degraded 1") {
		t.Fatal("metrics lack prewarm_imds_store_degraded 1")
	}
	r := do(adm, req{method: http.MethodPut, path: "/v1/instances/vm-1/config", body: `{"hostname":"new"}`})
	if r.Code != http.StatusServiceUnavailable {
		t.Fatalf("publish while degraded: %d %s", r.Code, r.Body)
	}
	if e := errBody(t, r); !strings.Contains(e.Error, "store unavailable") {
		t.Fatalf("error object: %+v", e)
	}
	// Guests keep their last document.
	if r := do(g, req{path: api.PathConfig, from: "10.0.0.5", hdr: md}); r.Code != http.StatusOK || !strings.Contains(r.Body.String(), "kept") {
		t.Fatalf("guest while degraded: %d %s", r.Code, r.Body)
	}

	st.down.Store(false)
	s.SetStoreHealth(nil)
	if r := do(adm, req{path: api.PathHealthz}); !strings.Contains(r.Body.String(), `"ok"`) {
		t.Fatalf("healthz after recovery: %s", r.Body)
	}
	if r := do(adm, req{path: api.PathMetrics}); !strings.Contains(r.Body.String(), "prewarm_imds_store_degraded 0") {
		t.Fatal("metrics lack prewarm_imds_store_degraded 0")
	}
	if g, err := s.Publish(context.Background(), "vm-1", []byte(`{"hostname":"new"}`), nil); err != nil || g != 2 {
		t.Fatalf("publish after recovery: %d, %v", g, err)
	}
	var u unavailable
	if !errors.As(error(downErr{}), &u) {
		t.Fatal("downErr does not match the unavailable interface")
	}
}
