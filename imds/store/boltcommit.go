package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Group commit. Every change the feed delivers (Apply, Delete,
// AppendStatus) is made by one committer goroutine, in rounds: each round
// commits, one transaction each, the publishes and registrations queued
// (in their order), then up to maxReportBatch queued status reports in one
// transaction: one fsync for the lot. So a publish waits for at most the
// one report batch being committed when it arrived, never behind a
// thousand report fsyncs, and reports that arrive together share an
// fsync. No delay is added to gather a batch: the reports that queued
// while the previous transaction committed make the next one, so a lone
// report commits at once.
//
// A caller still returns only once its change is durable and every
// running Feed has seen it (write), as before: group commit changes who
// waits for which fsync, not what an answer means.

// maxReportBatch bounds the reports of one transaction, and with it what
// a publish arriving meanwhile waits for: 50–100 µs of CPU per report
// into a full history of another instance on the benchmark machine, so
// 2–3 ms for 32 (BenchmarkBoltReportIngest, BenchmarkBoltPublishUnderReports).
// Larger batches did not ingest measurably faster (the pages a report
// dirties are its own history's either way) but made publishes wait
// longer: 256 gave publish p50 24 ms under saturation, 32 gave 2–6 ms.
const maxReportBatch = 32

// writeOp is one queued change: tx runs inside the committer's
// transaction and ev gives the feed's event once it committed.
type writeOp struct {
	tx  func(*bolt.Tx) error
	ev  func() Event
	res chan error // buffered: the committer never waits for the caller
}

// commitQueue holds the changes waiting for the committer.
type commitQueue struct {
	mu      sync.Mutex
	changes []*writeOp // publishes, registrations, deletes: one transaction each
	reports []*writeOp // status reports: batched
	closed  bool
	kick    chan struct{} // cap 1: something was queued, or closed
	done    chan struct{} // closed when the committer has ended
	commits atomic.Int64  // transactions the committer ran (tests)
	taken   atomic.Int64  // changes and reports the committer took (tests)
}

// startCommitter starts s's committer.
func (s *Bolt) startCommitter() {
	s.queue.kick = make(chan struct{}, 1)
	s.queue.done = make(chan struct{})
	go s.commitLoop()
}

// stopCommitter lets the committer commit what is queued and waits for it
// to end; later writes fail with ErrClosed.
func (s *Bolt) stopCommitter() {
	q := &s.queue
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.mu.Unlock()
	if !already {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	<-q.done
}

// write queues a change the feed delivers and waits until it is committed
// and delivered. report says it may share its transaction with other
// reports: tx must then return ErrNotFound, if at all, before it writes
// anything.
func (s *Bolt) write(ctx context.Context, tx func(*bolt.Tx) error, ev func() Event, report bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{tx: tx, ev: ev, res: make(chan error, 1)}
	q := &s.queue
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if report {
		q.reports = append(q.reports, op)
	} else {
		q.changes = append(q.changes, op)
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	// The change is committed whatever the caller's context does now, as
	// a transaction already running was before: wait for its answer.
	return <-op.res
}

func (s *Bolt) commitLoop() {
	q := &s.queue
	defer close(q.done)
	for {
		q.mu.Lock()
		changes := q.changes
		q.changes = nil
		n := min(len(q.reports), maxReportBatch)
		reports := append([]*writeOp(nil), q.reports[:n]...)
		// Keep the rest in place; drop the backing array once drained
		// so a burst does not pin it.
		q.reports = q.reports[n:]
		if len(q.reports) == 0 {
			q.reports = nil
		}
		closed := q.closed
		q.taken.Add(int64(len(changes) + len(reports)))
		q.mu.Unlock()
		if len(changes) == 0 && len(reports) == 0 {
			if closed {
				return
			}
			<-q.kick
			continue
		}
		for _, op := range changes {
			op.res <- s.commitOne(op)
		}
		if len(reports) > 0 {
			s.commitReports(reports)
		}
	}
}

// commitOne commits op in a transaction of its own and delivers its event.
func (s *Bolt) commitOne(op *writeOp) error {
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	s.queue.commits.Add(1)
	if err := s.update(context.Background(), op.tx); err != nil {
		return err
	}
	f.deliver(op.ev)
	return nil
}

// commitReports commits ops in one transaction and delivers their events
// in order, then answers each. A report of an instance that is not
// registered fails alone (ErrNotFound); any other failure inside the
// transaction rolls it back and each report is retried in a transaction
// of its own, so one bad report cannot fail the others. A failed commit
// (the file cannot be written) fails them all.
func (s *Bolt) commitReports(ops []*writeOp) {
	if len(ops) == 1 {
		ops[0].res <- s.commitOne(ops[0])
		return
	}
	f := &s.feed
	f.mu.Lock()
	s.queue.commits.Add(1)
	errs := make([]error, len(ops))
	var opErr error
	err := s.update(context.Background(), func(tx *bolt.Tx) error {
		for i, op := range ops {
			errs[i] = op.tx(tx)
			if errs[i] != nil && !errors.Is(errs[i], ErrNotFound) {
				opErr = errs[i]
				return opErr
			}
		}
		return nil
	})
	if err == nil {
		for i, op := range ops {
			if errs[i] == nil {
				f.deliver(op.ev)
			}
		}
	}
	f.mu.Unlock()
	switch {
	case err == nil:
		for i, op := range ops {
			op.res <- errs[i]
		}
	case opErr != nil:
		for _, op := range ops {
			op.res <- s.commitOne(op)
		}
	default:
		err = fmt.Errorf("commit %d status reports: %w", len(ops), err)
		for _, op := range ops {
			op.res <- err
		}
	}
}
