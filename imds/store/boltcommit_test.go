package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/prewarm/prewarm/shared/status"
)

// commitFixture is a bbolt store with n registered instances (i0, i1, ...)
// and a running Feed whose events it collects.
type commitFixture struct {
	s      *Bolt
	events chan Event
}

func newCommitFixture(t *testing.T, n int) *commitFixture {
	t.Helper()
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := range n {
		if _, err := s.Apply(ctx, fmt.Sprintf("i%d", i), Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}}}); err != nil {
			t.Fatal(err)
		}
	}
	f := &commitFixture{s: s, events: make(chan Event, 10000)}
	ready := make(chan struct{})
	go s.Feed(ctx, func(ev Event) {
		if ev.Type == EventResync {
			close(ready)
			return
		}
		f.events <- ev
	})
	<-ready
	return f
}

// hold keeps the committer from committing (it waits for the feed's lock)
// until the returned release is called.
func (f *commitFixture) hold() (release func()) {
	f.s.feed.mu.Lock()
	return f.s.feed.mu.Unlock
}

// waitQueued waits until the committer's queue holds reports reports and
// changes changes.
func (f *commitFixture) waitQueued(t *testing.T, reports, changes int) {
	t.Helper()
	q := &f.s.queue
	for range 200000 {
		q.mu.Lock()
		r, c := len(q.reports), len(q.changes)
		q.mu.Unlock()
		if r == reports && c == changes {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatalf("the queue never held %d reports and %d changes", reports, changes)
}

// waitTaken waits until the committer has taken n writes off its queue
// in all.
func (f *commitFixture) waitTaken(t *testing.T, n int64) {
	t.Helper()
	for range 200000 {
		if f.s.queue.taken.Load() == n {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatalf("the committer never took %d writes (took %d)", n, f.s.queue.taken.Load())
}

func report(seq uint64) status.Report {
	return status.Report{Seq: seq, Time: status.Time{Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)}, State: status.StateWaiting}
}

// appendAsync starts AppendStatus and returns where its answer arrives.
func (f *commitFixture) appendAsync(id string, r status.Report) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f.s.AppendStatus(context.Background(), id, r) }()
	return ch
}

// Reports that queue while a transaction commits share the next one:
// maxReportBatch+1 reports take two transactions, and each is stored,
// delivered once and answered.
func TestBoltReportsShareATransaction(t *testing.T) {
	const n = maxReportBatch + 1
	f := newCommitFixture(t, n)
	release := f.hold()
	answers := []<-chan error{f.appendAsync("i0", report(1))}
	f.waitTaken(t, n+1) // the registrations and this: it waits for the lock
	before := f.s.queue.commits.Load()
	for i := 1; i < n; i++ {
		answers = append(answers, f.appendAsync(fmt.Sprintf("i%d", i), report(1)))
	}
	f.waitQueued(t, n-1, 0)
	release()
	for i, a := range answers {
		if err := <-a; err != nil {
			t.Fatalf("report of i%d: %v", i, err)
		}
	}
	if got := f.s.queue.commits.Load() - before; got != 2 {
		t.Errorf("%d reports took %d transactions, want 2 (one, then the %d that queued meanwhile)", n, got, n-1)
	}
	seen := map[string]int{}
	for range n {
		ev := <-f.events
		if ev.Type != EventStatus {
			t.Fatalf("event %v, want status", ev.Type)
		}
		seen[ev.ID]++
	}
	for i := range n {
		id := fmt.Sprintf("i%d", i)
		if seen[id] != 1 {
			t.Errorf("%s: %d status events, want 1", id, seen[id])
		}
		h, err := f.s.StatusHistory(context.Background(), id)
		if err != nil || len(h) != 1 || h[0].Seq != 1 {
			t.Errorf("%s: history %+v, %v; want the one report", id, h, err)
		}
	}
}

// A publish queued behind more reports than one transaction takes is
// committed before the rest of them: it waits for one report batch at
// most, not for every report queued before it.
func TestBoltPublishOvertakesQueuedReports(t *testing.T) {
	const n = 3*maxReportBatch + 1
	f := newCommitFixture(t, 1)
	release := f.hold()
	answers := []<-chan error{f.appendAsync("i0", report(1))}
	f.waitTaken(t, 2)
	for i := 2; i <= n; i++ {
		answers = append(answers, f.appendAsync("i0", report(uint64(i))))
		f.waitQueued(t, i-1, 0) // in seq order
	}
	published := make(chan error, 1)
	go func() {
		_, err := f.s.Apply(context.Background(), "i0", Change{Publish: stamp(`"hostname":"x"`)})
		published <- err
	}()
	f.waitQueued(t, n-1, 1)
	release()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for _, a := range answers {
		if err := <-a; err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for range n + 1 {
		ev := <-f.events
		if ev.Type == EventChanged {
			order = append(order, "publish")
		} else {
			order = append(order, fmt.Sprint(ev.Status.Seq))
		}
	}
	// The report the committer held, then the publish, then the rest in
	// their order.
	if order[0] != "1" || order[1] != "publish" {
		t.Fatalf("commit order starts %v, want [1 publish ...]", order[:min(5, len(order))])
	}
	for i, o := range order[2:] {
		if o != fmt.Sprint(i+2) {
			t.Fatalf("report %d of the rest is seq %s, want %d", i, o, i+2)
		}
	}
	h, err := f.s.StatusHistory(context.Background(), "i0")
	if err != nil {
		t.Fatal(err)
	}
	if want := min(n, MaxStatusHistory); len(h) != want || h[len(h)-1].Seq != n {
		t.Fatalf("history: %d reports ending at seq %d, want %d ending at %d", len(h), h[len(h)-1].Seq, want, n)
	}
}

// A report of an unregistered instance fails alone with ErrNotFound; the
// reports sharing its transaction are stored.
func TestBoltBatchedReportOfUnknownInstance(t *testing.T) {
	f := newCommitFixture(t, 2)
	release := f.hold()
	first := f.appendAsync("i0", report(1))
	f.waitTaken(t, 3)
	a := f.appendAsync("i0", report(2))
	f.waitQueued(t, 1, 0)
	bad := f.appendAsync("ghost", report(1))
	f.waitQueued(t, 2, 0)
	b := f.appendAsync("i1", report(1))
	f.waitQueued(t, 3, 0)
	release()
	for _, ch := range []<-chan error{first, a, b} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-bad; !errors.Is(err, ErrNotFound) {
		t.Fatalf("report of an unregistered instance: %v, want ErrNotFound", err)
	}
	for id, want := range map[string]int{"i0": 2, "i1": 1} {
		h, err := f.s.StatusHistory(context.Background(), id)
		if err != nil || len(h) != want {
			t.Fatalf("%s: %d reports (%v), want %d", id, len(h), err, want)
		}
	}
	for range 3 {
		if ev := <-f.events; ev.ID == "ghost" {
			t.Fatalf("event for the unregistered instance: %+v", ev)
		}
	}
	select {
	case ev := <-f.events:
		t.Fatalf("a fourth event: %+v", ev)
	default:
	}
}

// Close commits what is queued; a write after it fails with ErrClosed.
func TestBoltCloseCommitsQueued(t *testing.T) {
	f := newCommitFixture(t, 1)
	release := f.hold()
	first := f.appendAsync("i0", report(1))
	f.waitTaken(t, 2)
	second := f.appendAsync("i0", report(2))
	f.waitQueued(t, 1, 0)
	closed := make(chan error, 1)
	go func() { closed <- f.s.Close() }()
	// Close waits for the committer, which waits for the lock.
	for range 2000 {
		f.s.queue.mu.Lock()
		c := f.s.queue.closed
		f.s.queue.mu.Unlock()
		if c {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("a report queued before Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := f.s.AppendStatus(context.Background(), "i0", report(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("report after Close: %v, want ErrClosed", err)
	}
}

// The history's size is kept beside it (bHistSize) so an append reads
// only what it drops; a history without that entry (a store written
// before it) is measured once, and Delete forgets it.
func TestBoltHistorySizeKept(t *testing.T) {
	ctx := context.Background()
	f := newCommitFixture(t, 1)
	s := f.s
	for i := uint64(1); i <= 10; i++ {
		if err := s.AppendStatus(ctx, "i0", report(i)); err != nil {
			t.Fatal(err)
		}
	}
	size := func() (n, bytes uint64, ok bool) {
		s.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bHistSize).Get([]byte("i0")); len(v) == 16 {
				n, bytes, ok = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), true
			}
			return nil
		})
		return
	}
	bytesOf := func(from, to uint64) (sum uint64) {
		for i := from; i <= to; i++ {
			sum += uint64(len(mustEncode(t, report(i))))
		}
		return sum
	}
	if n, b, ok := size(); !ok || n != 10 || b != bytesOf(1, 10) {
		t.Fatalf("kept size %d reports %d bytes (%v), want 10 and %d", n, b, ok, bytesOf(1, 10))
	}
	// As a store from before the size was kept.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bHistSize).Delete([]byte("i0")) }); err != nil {
		t.Fatal(err)
	}
	for i := uint64(11); i <= MaxStatusHistory+5; i++ {
		if err := s.AppendStatus(ctx, "i0", report(i)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.StatusHistory(ctx, "i0")
	if err != nil || len(h) != MaxStatusHistory || h[0].Seq != 6 {
		t.Fatalf("history: %d reports from seq %d (%v), want %d from 6", len(h), h[0].Seq, err, MaxStatusHistory)
	}
	if n, b, ok := size(); !ok || n != MaxStatusHistory || b != bytesOf(6, MaxStatusHistory+5) {
		t.Fatalf("kept size %d reports %d bytes (%v), want %d and %d", n, b, ok, MaxStatusHistory, bytesOf(6, MaxStatusHistory+5))
	}
	if err := s.Delete(ctx, "i0"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := size(); ok {
		t.Fatal("Delete kept the history's size")
	}
}

func mustEncode(t *testing.T, r status.Report) []byte {
	t.Helper()
	b, err := EncodeReport(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
