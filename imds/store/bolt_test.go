package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

func stamp(body string) Stamper {
	return func(id string, gen int64) ([]byte, error) {
		return fmt.Appendf(nil, `{"instanceId":%q,"generation":%d,%s}`, id, gen, body), nil
	}
}

func open(t *testing.T, dir string) *Bolt {
	t.Helper()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltGenerationsNeverGoBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	reg := &Registration{Addresses: []string{"10.0.0.4"}}
	for want := int64(1); want <= 3; want++ {
		rec, err := s.Apply(ctx, "vm-1", Change{Register: reg, Publish: stamp(`"hostname":"a"`)})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Generation != want {
			t.Fatalf("generation = %d, want %d", rec.Generation, want)
		}
	}
	if err := s.Delete(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "vm-1", Change{Publish: stamp(`"hostname":"a"`)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("publish after delete: %v, want ErrNotFound", err)
	}
	s.Close()
	s = open(t, dir)
	zero := int64(0)
	rec, err := s.Apply(ctx, "vm-1", Change{Register: reg, Publish: stamp(`"hostname":"b"`), IfMatch: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Generation != 4 {
		t.Fatalf("generation after delete+re-register+restart = %d, want 4", rec.Generation)
	}
	recs, err := s.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].Generation != 4 || recs[0].Addresses[0] != "10.0.0.4" {
		t.Fatalf("Load = %+v, %v", recs, err)
	}
}

func TestBoltApplyErrorsChangeNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "vnet1"}}); err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	tests := []struct {
		name string
		id   string
		c    Change
		want func(error) bool
	}{
		{"address conflict", "b", Change{Register: &Registration{Addresses: []string{"10.0.0.2", "10.0.0.1"}}, Publish: stamp(`"x":1`)},
			func(err error) bool {
				var c *ConflictError
				return errors.As(err, &c) && c.Owner == "a" && c.Kind == "address"
			}},
		{"interface conflict", "b", Change{Register: &Registration{HostInterface: "vnet1"}},
			func(err error) bool { var c *ConflictError; return errors.As(err, &c) && c.Kind == "hostInterface" }},
		{"unknown id", "c", Change{Publish: stamp(`"x":1`)}, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{"if-match mismatch", "a", Change{Publish: stamp(`"x":1`), IfMatch: &one},
			func(err error) bool { var p *PreconditionError; return errors.As(err, &p) && p.Current == 0 }},
		{"stamper error", "a", Change{Publish: func(string, int64) ([]byte, error) { return nil, errors.New("boom") }},
			func(err error) bool { return err != nil && err.Error() == "boom" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(ctx, tt.id, tt.c)
			if !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			recs, _ := s.Load(ctx)
			if len(recs) != 1 || recs[0].Generation != 0 {
				t.Fatalf("state changed: %+v", recs)
			}
		})
	}
	// Moving an address between instances works once released.
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.9"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, "b", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "vnet1"}}); err != nil {
		t.Fatalf("released address not reusable: %v", err)
	}
}

func TestBoltStatusHistoryBounded(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	if err := s.AppendStatus(ctx, "nobody", status.Report{Seq: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append to unknown: %v", err)
	}
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 1; i <= MaxStatusHistory+10; i++ {
		if err := s.AppendStatus(ctx, "a", status.Report{Seq: uint64(i), Time: status.Time{Time: now}, State: "waiting"}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.StatusHistory(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != MaxStatusHistory || h[0].Seq != 11 || h[len(h)-1].Seq != MaxStatusHistory+10 {
		t.Fatalf("history: len %d first %d last %d", len(h), h[0].Seq, h[len(h)-1].Seq)
	}
	recs, _ := s.Load(ctx)
	if recs[0].LastStatus == nil || recs[0].LastStatus.Seq != MaxStatusHistory+10 {
		t.Fatalf("last status: %+v", recs[0].LastStatus)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StatusHistory(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("history after delete: %v", err)
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	start := time.Now()
	if s2, err := OpenBolt(dir); err == nil {
		s2.Close()
		t.Fatal("second open of a live store succeeded")
	}
	t.Logf("second open refused after %v", time.Since(start))
}
