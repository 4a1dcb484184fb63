package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// commitFixture is a bbolt store with n registered instances (i0, i1, ...)
// and a running Feed whose events it collects.
type commitFixture struct {
	s      *Bolt
	events chan Event
}

// holdNextBatch stops the report committer's next batch once its reports
// have their seqs (rq.hook), until unblock is closed; entered is closed
// when it stops there.
func holdNextBatch(s *Bolt) (entered, unblock chan struct{}) {
	entered, unblock = make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.rq.hook = func() {
		once.Do(func() {
			close(entered)
			<-unblock
		})
	}
	return entered, unblock
}

// forceSweep makes the report committer's next batch run a sweep pass.
func forceSweep(s *Bolt) {
	s.idx.mu.Lock()
	s.idx.force = true
	s.idx.mu.Unlock()
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

// hold keeps both committers from finishing (they wait for the feed's
// lock after their commit) until the returned release is called.
func (f *commitFixture) hold() (release func()) {
	f.s.feed.mu.Lock()
	return f.s.feed.mu.Unlock
}

// waitQueued waits until the report committer's queue holds reports
// reports and the main committer's changes changes.
func (f *commitFixture) waitQueued(t *testing.T, reports, changes int) {
	t.Helper()
	for range 200000 {
		f.s.rq.mu.Lock()
		r := len(f.s.rq.ops)
		f.s.rq.mu.Unlock()
		f.s.queue.mu.Lock()
		c := len(f.s.queue.ops)
		f.s.queue.mu.Unlock()
		if r == reports && c == changes {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatalf("the queues never held %d reports and %d changes", reports, changes)
}

// waitTaken waits until the report committer has taken n reports off its
// queue in all.
func (f *commitFixture) waitTaken(t *testing.T, n int64) {
	t.Helper()
	for range 200000 {
		if f.s.rq.taken.Load() == n {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Fatalf("the report committer never took %d reports (took %d)", n, f.s.rq.taken.Load())
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

// Reports that queue while a transaction commits share the next one, with
// no cap: n reports take two transactions, and each is stored, delivered
// once and answered.
func TestBoltReportsShareATransaction(t *testing.T) {
	const n = 300
	f := newCommitFixture(t, n)
	release := f.hold()
	before := f.s.rq.commits.Load()
	answers := []<-chan error{f.appendAsync("i0", report(1))}
	f.waitTaken(t, 1) // committed, it waits for the lock
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
	if got := f.s.rq.commits.Load() - before; got != 2 {
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

// A publish commits while the report committer is busy: the report
// committer is held inside its loop (before its transaction) and a
// publish and a registration still commit and are delivered; the reports
// then commit.
func TestBoltPublishDoesNotWaitForReports(t *testing.T) {
	f := newCommitFixture(t, 1)
	entered, unblock := holdNextBatch(f.s)
	answers := []<-chan error{f.appendAsync("i0", report(1))}
	<-entered
	for i := 2; i <= 10; i++ {
		answers = append(answers, f.appendAsync("i0", report(uint64(i))))
	}
	rec, err := f.s.Apply(context.Background(), "i0", Change{Publish: stamp(`"hostname":"x"`)})
	if err != nil || rec.Generation != 1 {
		t.Fatalf("publish while the report committer is held: %+v, %v", rec, err)
	}
	if _, err := f.s.Apply(context.Background(), "new", Change{Register: &Registration{Addresses: []string{"10.9.9.9"}}}); err != nil {
		t.Fatal(err)
	}
	if ev := <-f.events; ev.Type != EventChanged || ev.ID != "i0" || ev.Record.Generation != 1 {
		t.Fatalf("first event %+v, want the publish", ev)
	}
	if ev := <-f.events; ev.Type != EventChanged || ev.ID != "new" {
		t.Fatalf("second event %+v, want the registration", ev)
	}
	for _, a := range answers {
		select {
		case err := <-a:
			t.Fatalf("a report was answered (%v) while its committer was held", err)
		default:
		}
	}
	close(unblock)
	for _, a := range answers {
		if err := <-a; err != nil {
			t.Fatal(err)
		}
	}
	// The nine queued in any order behind the held one.
	h, err := f.s.StatusHistory(context.Background(), "i0")
	if err != nil || len(h) != 10 || h[0].Seq != 1 {
		t.Fatalf("history %d reports, %v; want 10 from seq 1", len(h), err)
	}
}

// A report of an unregistered instance fails alone with ErrNotFound; the
// reports sharing its transaction are stored.
func TestBoltBatchedReportOfUnknownInstance(t *testing.T) {
	f := newCommitFixture(t, 2)
	release := f.hold()
	first := f.appendAsync("i0", report(1))
	f.waitTaken(t, 1)
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
	f.waitTaken(t, 1)
	second := f.appendAsync("i0", report(2))
	f.waitQueued(t, 1, 0)
	closed := make(chan error, 1)
	go func() { closed <- f.s.Close() }()
	// Close waits for the committer, which waits for the lock.
	for range 2000 {
		f.s.rq.mu.Lock()
		c := f.s.rq.closed
		f.s.rq.mu.Unlock()
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

func mustEncode(t *testing.T, r status.Report) []byte {
	t.Helper()
	b, err := EncodeReport(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// running reports whether q's committer goroutine was started.
func running[T any](q *opQueue[T]) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

// A committer starts with its store's first write of its kind: a store
// nobody writes to runs none, and a store closed unwritten closes.
func TestCommittersStartAtFirstWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if running(&s.queue) || running(&s.rq.opQueue) {
		t.Fatalf("committers running after open: main %v, reports %v", running(&s.queue), running(&s.rq.opQueue))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close unwritten: %v", err)
	}
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.8.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if !running(&s.queue) || running(&s.rq.opQueue) {
		t.Fatalf("after a register: main %v (want true), reports %v (want false)", running(&s.queue), running(&s.rq.opQueue))
	}
	if err := s.AppendStatus(ctx, "a", report(1)); err != nil {
		t.Fatal(err)
	}
	if !running(&s.rq.opQueue) {
		t.Fatal("report committer not running after a report")
	}
	h, err := s.StatusHistory(ctx, "a")
	if err != nil || len(h) != 1 {
		t.Fatalf("history after one report: %+v, %v", h, err)
	}
}
