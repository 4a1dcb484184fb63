package etcdstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
)

// The cluster has one epoch, made by the first load, shared by every host
// and kept across reopening; deleting the key (a wiped cluster) makes a
// new one.
func TestEpoch(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	if e := a.Epoch(); e != "" {
		t.Fatalf("epoch before any load: %q, want \"\"", e)
	}
	if _, err := a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e := a.Epoch()
	if !store.ValidEpoch(e) {
		t.Fatalf("epoch %q is not 16 lowercase hex digits", e)
	}
	b := open(t, []string{m.ClientURL}, "host-b")
	if _, _, err := b.Snapshot(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if b.Epoch() != e {
		t.Fatalf("host-b's epoch %q, host-a's %q: want one per cluster", b.Epoch(), e)
	}
	a.Close()
	a = open(t, []string{m.ClientURL}, "host-a")
	if _, err := a.Load(ctx); err != nil || a.Epoch() != e {
		t.Fatalf("epoch after reopening: %q, %v; want %q", a.Epoch(), err, e)
	}
	if _, err := a.Client().Delete(ctx, a.Prefix()+"epoch"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(ctx); err != nil || a.Epoch() == e || !store.ValidEpoch(a.Epoch()) {
		t.Fatalf("epoch after the key was deleted: %q, %v; want a new one", a.Epoch(), err)
	}
	if _, err := a.Client().Put(ctx, a.Prefix()+"epoch", "\"; evil"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load(ctx); err == nil {
		t.Fatal("load accepted an epoch key that is not 16 hex digits")
	}
}

func TestRaiseGeneration(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("a")}); err != nil {
		t.Fatal(err)
	}
	if err := a.RaiseGeneration(ctx, "vm-1", 9); err != nil {
		t.Fatal(err)
	}
	if err := a.RaiseGeneration(ctx, "vm-1", 5); err != nil { // never lowers
		t.Fatal(err)
	}
	rec, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("b")})
	if err != nil || rec.Generation != 10 {
		t.Fatalf("publish after raising the floor to 9: generation %d, %v; want 10", rec.Generation, err)
	}
	if err := a.RaiseGeneration(ctx, "nobody", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("raise for an unknown id: %v, want ErrNotFound", err)
	}
}
