package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/status"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open connects a Store for host to the etcd members, under a prefix of
// the test's own.
func open(t testing.TB, endpoints []string, host string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints:      endpoints,
		Prefix:         "/t/" + t.Name(),
		HostID:         host,
		RequestTimeout: 2 * time.Second,
		HealthInterval: 200 * time.Millisecond,
		Logger:         testLogger(t).With("host", host),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func stamp(body string) store.Stamper {
	return func(id string, gen int64) ([]byte, error) {
		return fmt.Appendf(nil, `{"instanceId":%q,"generation":%d,"hostname":%q}`, id, gen, body), nil
	}
}

func reg(addrs ...string) *store.Registration {
	return &store.Registration{Addresses: addrs}
}

func ptr[T any](v T) *T { return &v }

func TestApplyAndConflicts(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	b := open(t, []string{m.ClientURL}, "host-b")

	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("x")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("publish to unregistered: got %v, want ErrNotFound", err)
	}
	rec, err := a.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "vnet1", Labels: map[string]string{"pool": "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Generation != 0 || rec.Config != nil {
		t.Fatalf("fresh record: %+v", rec)
	}
	rec, err = a.Apply(ctx, "vm-1", store.Change{Publish: stamp("one"), IfMatch: ptr(int64(0))})
	if err != nil || rec.Generation != 1 {
		t.Fatalf("first publish: %+v, %v", rec, err)
	}
	var pe *store.PreconditionError
	if _, err := b.Apply(ctx, "vm-1", store.Change{Publish: stamp("two"), IfMatch: ptr(int64(0))}); !errors.As(err, &pe) || pe.Current != 1 {
		t.Fatalf("stale If-Match: got %v", err)
	}
	rec, err = b.Apply(ctx, "vm-1", store.Change{Publish: stamp("two"), IfMatch: ptr(int64(1))})
	if err != nil || rec.Generation != 2 || !strings.Contains(string(rec.Config), `"generation":2`) {
		t.Fatalf("second publish from host b: %+v, %v", rec, err)
	}
	// The publish from b did not move the instance.
	if recs, _ := a.Load(ctx); len(recs) != 1 || recs[0].ID != "vm-1" || recs[0].Generation != 2 {
		t.Fatalf("host a loads %+v", recs)
	}
	if recs, _ := b.Load(ctx); len(recs) != 0 {
		t.Fatalf("host b loads %+v, want nothing", recs)
	}

	var ce *store.ConflictError
	if _, err := a.Apply(ctx, "vm-2", store.Change{Register: reg("10.0.0.2", "10.0.0.1")}); !errors.As(err, &ce) || ce.Kind != "address" || ce.Owner != "vm-1" || ce.Value != "10.0.0.1" {
		t.Fatalf("address conflict: got %v", err)
	}
	if _, err := a.Apply(ctx, "vm-2", store.Change{Register: &store.Registration{HostInterface: "vnet1"}}); !errors.As(err, &ce) || ce.Kind != "hostInterface" {
		t.Fatalf("interface conflict on the same host: got %v", err)
	}
	// Interfaces are per host: vnet1 on host b is another device.
	if _, err := b.Apply(ctx, "vm-2", store.Change{Register: &store.Registration{HostInterface: "vnet1"}}); err != nil {
		t.Fatalf("same interface name on another host: %v", err)
	}
	// A failed change changes nothing: 10.0.0.2 is still free.
	if _, err := b.Apply(ctx, "vm-3", store.Change{Register: reg("10.0.0.2"), Publish: stamp("h3")}); err != nil {
		t.Fatal(err)
	}
	// Re-registration releases the addresses it drops.
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.9")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, "vm-4", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatalf("address released by re-registration: %v", err)
	}
	// Register and publish together: both or neither.
	if _, err := a.Apply(ctx, "vm-5", store.Change{Register: reg("10.0.0.1"), Publish: stamp("h5")}); !errors.As(err, &ce) {
		t.Fatalf("want conflict, got %v", err)
	}
	if _, err := a.Apply(ctx, "vm-5", store.Change{Publish: stamp("h5")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("vm-5 exists after a failed change: %v", err)
	}
}

func TestHandover(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	b := open(t, []string{m.ClientURL}, "host-b")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap1"}, Publish: stamp("a")}); err != nil {
		t.Fatal(err)
	}
	rec, err := b.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap9"}})
	if err != nil || rec.Generation != 1 {
		t.Fatalf("handover: %+v, %v", rec, err)
	}
	if recs, _ := a.Load(ctx); len(recs) != 0 {
		t.Fatalf("old host still loads %+v", recs)
	}
	if recs, _ := b.Load(ctx); len(recs) != 1 || recs[0].HostInterface != "tap9" {
		t.Fatalf("new host loads %+v", recs)
	}
	// The old host's device name is free again there.
	if _, err := a.Apply(ctx, "vm-2", store.Change{Register: &store.Registration{HostInterface: "tap1"}}); err != nil {
		t.Fatalf("old host's interface not released: %v", err)
	}
	rec, err = b.Apply(ctx, "vm-1", store.Change{Publish: stamp("b")})
	if err != nil || rec.Generation != 2 {
		t.Fatalf("generation after handover: %+v, %v", rec, err)
	}
}

// TestConcurrentPublishers runs publishers on two clients (two hosts) at
// once against one instance: every publish gets its own generation, each
// publisher sees its own increase, and together they are 1..N.
func TestConcurrentPublishers(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	stores := []*etcdstore.Store{open(t, []string{m.ClientURL}, "host-a"), open(t, []string{m.ClientURL}, "host-b")}
	if _, err := stores[0].Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 15
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, len(stores)*workers)
	for ci, s := range stores {
		for w := range workers {
			name := fmt.Sprintf("c%d-w%d", ci, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				last := int64(0)
				for i := range each {
					rec, err := s.Apply(ctx, "vm-1", store.Change{Publish: stamp(fmt.Sprintf("%s-%d", name, i))})
					if err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
					if rec.Generation <= last {
						errs <- fmt.Errorf("%s: generation went from %d to %d", name, last, rec.Generation)
						return
					}
					last = rec.Generation
					mu.Lock()
					if other, dup := seen[rec.Generation]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("generation %d given to %s and %s", rec.Generation, other, name)
						return
					}
					seen[rec.Generation] = name
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := int64(len(stores) * workers * each)
	for g := int64(1); g <= n; g++ {
		if _, ok := seen[g]; !ok {
			t.Errorf("generation %d missing", g)
		}
	}
	recs, _, err := stores[1].Snapshot(ctx, 0)
	if err != nil || len(recs) != 1 || recs[0].Generation != n {
		t.Fatalf("final state %+v, %v; want generation %d", recs, err, n)
	}
}

func TestDeleteKeepsCounter(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	s := open(t, []string{m.ClientURL}, "host-a")
	if _, err := s.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap1"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Apply(ctx, "vm-1", store.Change{Publish: stamp("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendStatus(ctx, "vm-1", status.Report{Seq: 1, State: status.StateProvisioned, Generation: 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "vm-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.StatusHistory(ctx, "vm-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("history of a deleted instance: %v", err)
	}
	// Its address and interface are free.
	if _, err := s.Apply(ctx, "vm-2", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap1"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.7"), Publish: stamp("again")})
	if err != nil || rec.Generation != 4 || rec.LastStatus != nil {
		t.Fatalf("after delete and re-registration: %+v, %v; want generation 4, no status", rec, err)
	}
	if h, err := s.StatusHistory(ctx, "vm-1"); err != nil || len(h) != 0 {
		t.Fatalf("history after re-registration: %v, %v", h, err)
	}
}

func TestStatusHistoryBounded(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	s := open(t, []string{m.ClientURL}, "host-a")
	if err := s.AppendStatus(ctx, "vm-1", status.Report{Seq: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status of unknown instance: %v", err)
	}
	if _, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	const total = store.MaxStatusHistory + 20
	for i := 1; i <= total; i++ {
		if err := s.AppendStatus(ctx, "vm-1", status.Report{Seq: uint64(i), State: status.StateWaiting}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.StatusHistory(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != store.MaxStatusHistory || h[0].Seq != total-store.MaxStatusHistory+1 || h[len(h)-1].Seq != total {
		t.Fatalf("history: %d reports, first %d, last %d", len(h), h[0].Seq, h[len(h)-1].Seq)
	}
	resp, err := s.Client().Get(ctx, s.Prefix()+"status/vm-1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != store.MaxStatusHistory {
		t.Fatalf("status keys in etcd: %d, %v", resp.Count, err)
	}
	recs, _ := s.Load(ctx)
	if len(recs) != 1 || recs[0].LastStatus == nil || recs[0].LastStatus.Seq != total {
		t.Fatalf("last status: %+v", recs)
	}
}

// next receives the next event that is not a health event, failing after
// 10 s.
func next(t *testing.T, ch <-chan etcdstore.Event) etcdstore.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("event channel closed")
			}
			if ev.Type == etcdstore.EventHealth {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func TestWatchDeliversPublish(t *testing.T) {
	m := etcdtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := open(t, []string{m.ClientURL}, "host-a")
	b := open(t, []string{m.ClientURL}, "host-b")
	if _, err := b.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	ch := b.Watch(ctx, 0)
	ev := next(t, ch)
	if ev.Type != etcdstore.EventResync || len(ev.Instances) != 1 || !ev.Instances[0].Local {
		t.Fatalf("first event: %+v", ev)
	}
	// A publish through another host reaches host b.
	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("from-a")}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventChanged || ev.ID != "vm-1" || !ev.Instance.Local || ev.Instance.Generation != 1 || !strings.Contains(string(ev.Instance.Config), "from-a") {
		t.Fatalf("publish event: %+v", ev)
	}
	// One transaction, one event: register and publish together.
	if _, err := a.Apply(ctx, "vm-2", store.Change{Register: reg("10.0.0.2"), Publish: stamp("both")}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventChanged || ev.ID != "vm-2" || ev.Instance.Local || ev.Instance.HostID != "host-a" || ev.Instance.Generation != 1 {
		t.Fatalf("register+publish event: %+v", ev)
	}
	if err := b.AppendStatus(ctx, "vm-1", status.Report{Seq: 1, State: status.StatePartialReady, Generation: 1}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventStatus || ev.ID != "vm-1" || ev.Status.State != status.StatePartialReady {
		t.Fatalf("status event: %+v", ev)
	}
	// A control plane writing straight into etcd in the documented
	// layout, with the same compare-and-swap.
	cli := a.Client()
	p := a.Prefix()
	regv, _ := json.Marshal(map[string]any{"addresses": []string{"10.0.0.3"}})
	resp, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(p+"placement/vm-3"), "=", 0),
		clientv3.Compare(clientv3.ModRevision(p+"addresses/10.0.0.3"), "=", 0),
		clientv3.Compare(clientv3.ModRevision(p+"generations/vm-3"), "=", 0),
	).Then(
		clientv3.OpPut(p+"placement/vm-3", "host-b"),
		clientv3.OpPut(p+"hosts/host-b/registrations/vm-3", string(regv)),
		clientv3.OpPut(p+"addresses/10.0.0.3", "vm-3"),
		clientv3.OpPut(p+"generations/vm-3", "1"),
		clientv3.OpPut(p+"hosts/host-b/configs/vm-3", `{"instanceId":"vm-3","generation":1,"partial":true}`),
	).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("control plane write: %v %v", resp, err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventChanged || ev.ID != "vm-3" || !ev.Instance.Local || ev.Instance.Generation != 1 {
		t.Fatalf("control plane event: %+v", ev)
	}
	// The store continues the control plane's counter.
	rec, err := b.Apply(ctx, "vm-3", store.Change{Publish: stamp("final")})
	if err != nil || rec.Generation != 2 {
		t.Fatalf("publish after control plane: %+v, %v", rec, err)
	}
	next(t, ch)
	if err := a.Delete(ctx, "vm-2"); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventDeleted || ev.ID != "vm-2" {
		t.Fatalf("delete event: %+v", ev)
	}
}

func TestWatchResumeAndCompaction(t *testing.T) {
	m := etcdtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := open(t, []string{m.ClientURL}, "host-a")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("h1")}); err != nil {
		t.Fatal(err)
	}
	_, rev, err := a.Snapshot(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("n")}); err != nil {
			t.Fatal(err)
		}
	}
	// Resume: the three publishes after rev, no resync.
	wctx, wcancel := context.WithCancel(ctx)
	ch := a.Watch(wctx, rev)
	for g := int64(2); g <= 4; g++ {
		ev := next(t, ch)
		if ev.Type != etcdstore.EventChanged || ev.Instance.Generation != g {
			t.Fatalf("resumed event: %+v, want generation %d", ev, g)
		}
	}
	wcancel()
	// Compact past rev: resuming from it becomes a full resync.
	if _, err := a.Apply(ctx, "vm-2", store.Change{Register: reg("10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	resp, err := a.Client().Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client().Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ch = a.Watch(ctx, rev)
	ev := next(t, ch)
	if ev.Type != etcdstore.EventResync || len(ev.Instances) != 2 || ev.Instances[0].Generation != 4 {
		t.Fatalf("after compaction: %+v", ev)
	}
	if _, err := a.Apply(ctx, "vm-2", store.Change{Publish: stamp("after")}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != etcdstore.EventChanged || ev.ID != "vm-2" || ev.Instance.Generation != 1 {
		t.Fatalf("event after resync: %+v", ev)
	}
}

// TestFollowReadsOwnWrites: while Follow runs, Apply returns only after
// the follower has seen the write.
func TestFollowReadsOwnWrites(t *testing.T) {
	m := etcdtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := open(t, []string{m.ClientURL}, "host-a")
	var mu sync.Mutex
	gens := map[string]int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Follow(ctx, 0, func(ev etcdstore.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch ev.Type {
			case etcdstore.EventResync:
				for _, in := range ev.Instances {
					gens[in.ID] = in.Generation
				}
			case etcdstore.EventChanged:
				gens[ev.ID] = ev.Instance.Generation
			}
		})
	}()
	defer func() { cancel(); <-done }()
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rec, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("x")})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		g := gens["vm-1"]
		mu.Unlock()
		if g != rec.Generation {
			t.Fatalf("publish %d: follower at generation %d after Apply returned %d", i, g, rec.Generation)
		}
	}
}

// TestEtcdLoss: etcd killed → the follower reports degraded and writes
// fail at once with ErrUnavailable; etcd back → recovered, and the
// follower catches up with what is written next.
func TestEtcdLoss(t *testing.T) {
	m := etcdtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := open(t, []string{m.ClientURL}, "host-a")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("h1")}); err != nil {
		t.Fatal(err)
	}
	evs := make(chan etcdstore.Event, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Follow(ctx, 0, func(ev etcdstore.Event) { evs <- ev })
	}()
	defer func() { cancel(); <-done }()
	if ev := <-evs; ev.Type != etcdstore.EventResync {
		t.Fatalf("first event %+v", ev)
	}
	m.Stop()
	waitHealth(t, evs, true)
	if !a.Degraded() {
		t.Fatal("Degraded() false after the health event")
	}
	start := time.Now()
	_, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("h2")})
	var u interface{ Unavailable() bool }
	if !errors.Is(err, etcdstore.ErrUnavailable) || !errors.As(err, &u) {
		t.Fatalf("publish while etcd is down: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a publish while degraded took %v", d)
	}
	m.Restart()
	m.WaitHealthy()
	waitHealth(t, evs, false)
	if a.Degraded() {
		t.Fatal("still degraded after recovery")
	}
	rec, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("h2")})
	if err != nil || rec.Generation != 2 {
		t.Fatalf("publish after recovery: %+v, %v", rec, err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-evs:
			if ev.Type == etcdstore.EventChanged && ev.Instance.Generation == 2 {
				return
			}
		case <-deadline:
			t.Fatal("follower did not catch up after recovery")
		}
	}
}

func waitHealth(t *testing.T, evs <-chan etcdstore.Event, degraded bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev := <-evs:
			if ev.Type == etcdstore.EventHealth && ev.Degraded == degraded {
				t.Logf("health event: degraded=%v err=%v", ev.Degraded, ev.Err)
				return
			}
		case <-deadline:
			t.Fatalf("no health event degraded=%v within 15s", degraded)
		}
	}
}

func TestOpenValidates(t *testing.T) {
	for _, cfg := range []etcdstore.Config{
		{HostID: "h"},
		{Endpoints: []string{"http://127.0.0.1:1"}, HostID: "bad/host"},
		{Endpoints: []string{"http://127.0.0.1:1"}, HostID: "h", CertFile: "/nonexistent"},
		{Endpoints: []string{"http://127.0.0.1:1"}, HostID: "h", PasswordFile: "/nonexistent"},
	} {
		if s, err := etcdstore.Open(cfg); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// TestTLSClientCertificate: etcd requires a client certificate; the store
// presents the one named by its files, and one without it is refused.
func TestTLSClientCertificate(t *testing.T) {
	m, files := etcdtest.StartTLS(t)
	ctx := context.Background()
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints: []string{m.ClientURL}, HostID: "host-a", Prefix: "/tls",
		CertFile: files.ClientCert, KeyFile: files.ClientKey, CAFile: files.CA,
		RequestTimeout: 2 * time.Second, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("tls")})
	if err != nil || rec.Generation != 1 {
		t.Fatalf("publish over TLS: %+v, %v", rec, err)
	}
	// Trusting the CA without a client certificate is not enough.
	bare, err := etcdstore.Open(etcdstore.Config{
		Endpoints: []string{m.ClientURL}, HostID: "host-b", Prefix: "/tls",
		CAFile: files.CA, DialTimeout: time.Second, RequestTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.Load(ctx); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

// TestPasswordFile: with etcd's auth on, the store logs in with the
// password read from its file.
func TestPasswordFile(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const pw = "s3cret-pw"
	for _, step := range []func() error{
		func() error { _, err := admin.RoleAdd(ctx, "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "root", pw); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd auth: %v", err)
		}
	}
	pwFile := t.TempDir() + "/pw"
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{m.ClientURL}, HostID: "host-a", Username: "root", PasswordFile: pwFile, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatalf("register with a password: %v", err)
	}
	wrong := t.TempDir() + "/wrong"
	os.WriteFile(wrong, []byte("nope"), 0o600)
	if s, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{m.ClientURL}, HostID: "host-a", Username: "root", PasswordFile: wrong, RequestTimeout: 2 * time.Second}); err == nil {
		s.Close()
		t.Fatal("a wrong password was accepted")
	}
}

// TestThreeMemberCluster: one member down, publishes keep working; two
// down, the follower reports degraded and publishes are refused; both
// back, it recovers and nothing published is lost.
func TestThreeMemberCluster(t *testing.T) {
	ms := etcdtest.StartCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	a := open(t, etcdtest.Endpoints(ms), "host-a")
	b := open(t, etcdtest.Endpoints(ms), "host-b")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1"), Publish: stamp("h1")}); err != nil {
		t.Fatal(err)
	}
	evs := make(chan etcdstore.Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Follow(ctx, 0, func(ev etcdstore.Event) { evs <- ev })
	}()
	defer func() { cancel(); <-done }()
	if ev := <-evs; ev.Type != etcdstore.EventResync || len(ev.Instances) != 1 || ev.Instances[0].Generation != 1 {
		t.Fatalf("first event: %+v", ev)
	}

	ms[0].Stop()
	for i := 2; i <= 4; i++ {
		rec, err := b.Apply(ctx, "vm-1", store.Change{Publish: stamp("quorum")})
		if err != nil || rec.Generation != int64(i) {
			t.Fatalf("publish with one member down: %+v, %v", rec, err)
		}
	}
	// One member down is no outage: the follower delivers the three
	// publishes and never reports degraded.
	deadline := time.After(15 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-evs:
			if ev.Type == etcdstore.EventHealth && ev.Degraded {
				t.Fatalf("degraded with one member of three down: %v", ev.Err)
			}
			got = ev.Type == etcdstore.EventChanged && ev.Instance.Generation == 4
		case <-deadline:
			t.Fatal("follower did not deliver the publishes made with one member down")
		}
	}
	ms[1].Stop()
	waitHealth(t, evs, true)
	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("no quorum")}); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Fatalf("publish without quorum: %v", err)
	}
	ms[0].Restart()
	ms[1].Restart()
	for _, m := range ms {
		m.WaitHealthy()
	}
	waitHealth(t, evs, false)
	rec, err := b.Apply(ctx, "vm-1", store.Change{Publish: stamp("back")})
	if err != nil || rec.Generation != 5 {
		t.Fatalf("publish after recovery: %+v, %v", rec, err)
	}
	deadline = time.After(15 * time.Second)
	for {
		select {
		case ev := <-evs:
			if ev.Type == etcdstore.EventChanged && ev.Instance.Generation == 5 {
				return
			}
		case <-deadline:
			t.Fatal("follower did not catch up after the cluster recovered")
		}
	}
}

// follower runs Follow on s and returns its events.
func follower(t *testing.T, s *etcdstore.Store) <-chan etcdstore.Event {
	t.Helper()
	return collect(t, func(ctx context.Context, fn func(etcdstore.Event)) error { return s.Follow(ctx, 0, fn) })
}

// TestFollowIsHostScoped: a host's Follow sees its own instances only; a
// handover is a delete on the old host and a change, config included, on
// the new one.
func TestFollowIsHostScoped(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	a := open(t, []string{m.ClientURL}, "host-a")
	b := open(t, []string{m.ClientURL}, "host-b")
	c := open(t, []string{m.ClientURL}, "host-c")
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap1"}, Publish: stamp("a")}); err != nil {
		t.Fatal(err)
	}
	ea, eb := follower(t, a), follower(t, b)
	if ev := next(t, ea); ev.Type != etcdstore.EventResync || len(ev.Instances) != 1 || ev.Instances[0].Generation != 1 {
		t.Fatalf("host a resync: %+v", ev)
	}
	if ev := next(t, eb); ev.Type != etcdstore.EventResync || len(ev.Instances) != 0 {
		t.Fatalf("host b resync: %+v", ev)
	}
	// Another host's instance is nobody else's business.
	if _, err := c.Apply(ctx, "vm-c", store.Change{Register: reg("10.0.0.3"), Publish: stamp("c")}); err != nil {
		t.Fatal(err)
	}
	// Handover to b, then a publish through c.
	if _, err := b.Apply(ctx, "vm-1", store.Change{Register: &store.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "tap2"}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ea); ev.Type != etcdstore.EventDeleted || ev.ID != "vm-1" {
		t.Fatalf("old host after handover: %+v", ev)
	}
	ev := next(t, eb)
	if ev.Type != etcdstore.EventChanged || ev.ID != "vm-1" || !ev.Instance.Local || ev.Instance.Generation != 1 || !strings.Contains(string(ev.Instance.Config), `"hostname":"a"`) || ev.Instance.HostInterface != "tap2" {
		t.Fatalf("new host after handover: %+v", ev)
	}
	// A publish through a host to another host's instance does not wait
	// for its own follower, which never sees it.
	start := time.Now()
	if _, err := a.Apply(ctx, "vm-1", store.Change{Publish: stamp("via-a")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("publish to another host's instance took %v", d)
	}
	if ev := next(t, eb); ev.Type != etcdstore.EventChanged || ev.Instance.Generation != 2 {
		t.Fatalf("publish after handover: %+v", ev)
	}
	// A report reaches the serving host's follower, and the fleet's
	// laststatus/ prefix.
	if err := b.AppendStatus(ctx, "vm-1", status.Report{Seq: 9, State: status.StateProvisioned, Generation: 2}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, eb); ev.Type != etcdstore.EventStatus || ev.ID != "vm-1" || ev.Status.Seq != 9 {
		t.Fatalf("status on the serving host: %+v", ev)
	}
	if resp, err := b.Client().Get(ctx, b.Prefix()+"laststatus/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("fleet laststatus: %v, %v", resp, err)
	}
	select {
	case ev := <-ea:
		if ev.Type != etcdstore.EventHealth {
			t.Fatalf("old host got %+v", ev)
		}
	case <-time.After(300 * time.Millisecond):
	}
	// Handing it back carries the last status along.
	if _, err := a.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ea); ev.Type != etcdstore.EventChanged || ev.Instance.LastStatus == nil || ev.Instance.LastStatus.Seq != 9 || ev.Instance.Generation != 2 {
		t.Fatalf("handed back: %+v", ev)
	}
	if ev := next(t, eb); ev.Type != etcdstore.EventDeleted {
		t.Fatalf("host b after handing back: %+v", ev)
	}
	if _, err := b.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	next(t, ea)
	next(t, eb)
	// The fleet view shows where everything is.
	all, _, err := a.Snapshot(ctx, 0)
	if err != nil || len(all) != 2 || all[0].HostID != "host-b" || all[1].HostID != "host-c" || all[0].Generation != 2 {
		t.Fatalf("fleet snapshot: %+v, %v", all, err)
	}
}
