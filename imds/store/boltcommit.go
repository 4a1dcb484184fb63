package store

import (
	"context"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// The main committer. Every change of imds.db the feed delivers (Apply,
// Delete) is made by one committer goroutine, one transaction each, in the
// order they were queued. Status reports have a committer of their own on
// reports.db (reports.go), so a publish never waits for a report
// transaction or its fsync.
//
// A caller returns only once its change is durable and every running Feed
// has seen it (write).

// writeOp is one queued change: tx runs inside the committer's
// transaction, after (if set) runs once it committed or failed, under the
// feed's lock and before the event, and ev (if set) gives the feed's event
// once it committed.
type writeOp struct {
	tx    func(*bolt.Tx) error
	ev    func() Event
	after func(committed bool)
	res   chan error // buffered: the committer never waits for the caller
}

// opQueue is a committer's queue: callers push ops, the committer takes
// all that are queued at once (take) and waits for a kick when there are
// none. Both committers use it: the main one (writeOp) and the report
// committer (reportOp, reports.go).
type opQueue[T any] struct {
	mu      sync.Mutex
	ops     []T
	closed  bool
	kick    chan struct{} // cap 1: something was queued, or closed
	done    chan struct{} // closed when the committer has ended
	commits atomic.Int64  // transactions the committer ran (tests)
	taken   atomic.Int64  // ops the committer took (tests)
	loop    func()        // the committer
	running bool          // its goroutine was started (or never will be: stopped first)
}

// start readies q for the committer loop, which returns once q is closed
// and drained. Its goroutine starts with the first push, or at once when
// now is true (work is waiting that no push brings): a store nobody
// writes to runs no committer (issue 15's idle RSS: an IMDS that is never
// sent a status report has no report committer).
func (q *opQueue[T]) start(loop func(), now bool) {
	q.kick = make(chan struct{}, 1)
	q.done = make(chan struct{})
	q.loop = loop
	if now {
		q.mu.Lock()
		q.run()
		q.mu.Unlock()
	}
}

// run starts the committer goroutine; q.mu is held.
func (q *opQueue[T]) run() {
	q.running = true
	go func() {
		defer close(q.done)
		q.loop()
	}()
}

// stop closes q (later pushes fail), lets the committer take what is
// queued and waits for it to end.
func (q *opQueue[T]) stop() {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	if !q.running {
		// Never pushed to: nothing to commit, and no committer will
		// start now that q is closed.
		q.running = true
		close(q.done)
	}
	q.mu.Unlock()
	if !already {
		q.wake()
	}
	<-q.done
}

func (q *opQueue[T]) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// push queues op for the committer; false once q is closed.
func (q *opQueue[T]) push(op T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.ops = append(q.ops, op)
	if !q.running {
		q.run()
	}
	q.mu.Unlock()
	q.wake()
	return true
}

// take returns every op queued (the committer's) and whether q is closed.
func (q *opQueue[T]) take() (ops []T, closed bool) {
	q.mu.Lock()
	ops, q.ops, closed = q.ops, nil, q.closed
	q.taken.Add(int64(len(ops)))
	q.mu.Unlock()
	return ops, closed
}

// wait blocks the committer until something is pushed or q is closed.
func (q *opQueue[T]) wait() { <-q.kick }

// startCommitter readies s's committer, which starts with the first write.
func (s *Bolt) startCommitter() { s.queue.start(s.commitLoop, false) }

// stopCommitter lets the committer commit what is queued and waits for it
// to end; later writes fail with ErrClosed.
func (s *Bolt) stopCommitter() { s.queue.stop() }

// write queues a change the feed delivers and waits until it is committed
// and delivered.
func (s *Bolt) write(ctx context.Context, tx func(*bolt.Tx) error, ev func() Event, after func(bool)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{tx: tx, ev: ev, after: after, res: make(chan error, 1)}
	if !s.enqueue(op) {
		return ErrClosed
	}
	// The change is committed whatever the caller's context does now, as
	// a transaction already running was before: wait for its answer.
	return <-op.res
}

// enqueue queues op for the main committer; false once it is closed.
func (s *Bolt) enqueue(op *writeOp) bool { return s.queue.push(op) }

func (s *Bolt) commitLoop() {
	q := &s.queue
	for {
		changes, closed := q.take()
		if len(changes) == 0 {
			if closed {
				return
			}
			q.wait()
			continue
		}
		for _, op := range changes {
			op.res <- s.commitOne(op)
		}
		// The commits read the leaves they changed through the mapping.
		s.view(context.Background(), func(tx *bolt.Tx) error { dropMappedTx(tx); return nil })
	}
}

// commitOne commits op in a transaction of its own, then, under the
// feed's lock, runs its after and delivers its event. The feed's lock is
// not held across the transaction and its fsync, so the report committer
// delivers meanwhile; the main committer's own events keep their commit
// order (one goroutine), and a Feed starting between a commit and its
// delivery sees the change in its resync and again as the event (the same
// state twice).
func (s *Bolt) commitOne(op *writeOp) error {
	s.queue.commits.Add(1)
	err := s.update(context.Background(), op.tx)
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if op.after != nil {
		op.after(err == nil)
	}
	if err != nil {
		return err
	}
	if op.ev != nil {
		f.deliver(op.ev)
	}
	return nil
}
