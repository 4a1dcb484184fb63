package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/prewarm/prewarm/shared/status"
)

// Status reports live in a store file of their own, reports.db, beside
// imds.db, written by a committer of their own (reportLoop), so that a
// publish never waits for a report's transaction or fsync.
//
// reports.db is a time-ordered log: bucket "log" maps a global seq (8
// bytes BE, strictly increasing, never reused; the next one is kept in
// bucket "meta" with every transaction) to uvarint(len(id)) ‖ id ‖ the
// stored report (EncodeReport). An append touches the tree's right edge
// only, so a batch of reports from a thousand instances dirties a few
// pages instead of a thousand histories' leaves.
//
// Which reports make an instance's history is held in memory (reportIndex,
// rebuilt from the file at open): per registered instance the seqs and
// sizes of its kept reports, oldest first, within MaxStatusHistory and
// MaxStatusHistoryBytes (the newest always). A report trimmed from a
// history, or one of a deleted instance, is dead: it stays in the file
// until a sweep deletes dead records in bulk, in key order, a bounded
// number a transaction.
//
// Membership without a transaction across the two files: the report
// committer takes a report only of an id in the index (registered) that
// no Delete is removing, checked when its batch is formed; a registration
// adds the id once imds.db committed it; a Delete writes reportcut/<id> =
// the last seq handed out into imds.db in its transaction and marks the id
// deleting at the same moment (under the index's lock), so every report of
// the deleted instance has a seq at most the cut. The id leaves the index
// only once the Delete committed: until then its history is as it was
// (reports taken before are added and delivered, a sweep judges its
// records live), so a Delete whose commit fails changes nothing but the
// reports it refused meanwhile, which were never stored. At open a record is live iff its id
// is registered, its seq is above the id's cut, and it is within the id's
// newest bounds. Cuts go once a sweep pass has removed what they cover.

// ReportsFileName is the status reports' file inside a data directory.
const ReportsFileName = "reports.db"

// Buckets and keys of reports.db, and imds.db's cut bucket.
var (
	rLog      = []byte("log")       // seq (8 bytes BE) -> uvarint(len(id)) ‖ id ‖ report
	rMeta     = []byte("meta")      // kNextSeq, kMigrated
	kNextSeq  = []byte("nextseq")   // the next seq to hand out (8 bytes BE)
	kMigrated = []byte("migrated")  // set once imds.db's histories were copied here
	bCuts     = []byte("reportcut") // in imds.db: id -> the last seq of its deleted incarnation (8 bytes BE)
)

// Sweep bounds: a sweep runs when dead records are at least minSweepDead
// and more than the live ones; one transaction deletes at most
// maxSweepDeletes records and reads at most maxSweepVisit. Variables for
// the tests.
var (
	minSweepDead    = 4096
	maxSweepDeletes = 10000
	maxSweepVisit   = 50000
)

// sweepLockRecords is how many records a sweep judges under the index's
// lock at a time.
const sweepLockRecords = 512

// migrateBatch and migrateBatchBytes bound the reports one migration
// transaction copies (a transaction holds its pages in memory until it
// commits: 20,000 reports of 64 KiB would be over a gigabyte).
var (
	migrateBatch      = 20000
	migrateBatchBytes = 32 << 20 // a variable for the tests
)

// history is one registered instance's kept reports: seqs oldest first,
// with the stored size of each.
type history struct {
	seqs  []uint64
	sizes []uint32
	bytes int
	// deleting: a Delete's transaction is running; reports are refused
	// and its history stays until the Delete committed (then gone) or
	// failed (then as it was).
	deleting bool
	gone     bool // deleted: its reports are dead, later ones refused
}

// add appends a report of size bytes at seq, dropping the oldest ones
// past the bounds first (the new one always stays); it returns how many
// it dropped.
func (h *history) add(seq uint64, size int) (dropped int) {
	n := 0
	for n < len(h.seqs) && (len(h.seqs)-n+1 > MaxStatusHistory || h.bytes+size > MaxStatusHistoryBytes) {
		h.bytes -= int(h.sizes[n])
		n++
	}
	if n > 0 {
		h.seqs = h.seqs[:copy(h.seqs, h.seqs[n:])]
		h.sizes = h.sizes[:copy(h.sizes, h.sizes[n:])]
	}
	h.seqs = append(h.seqs, seq)
	h.sizes = append(h.sizes, uint32(size))
	h.bytes += size
	return n
}

func (h *history) has(seq uint64) bool {
	_, ok := slices.BinarySearch(h.seqs, seq)
	return ok
}

// pendingCut is a cut of imds.db to remove once a sweep pass has
// covered every record it names: a pass that started judging after the
// Delete (its number is above after) in a batch whose seq limit is above
// cut (every seq up to cut was committed before it, or never).
type pendingCut struct {
	id    string
	cut   uint64
	after uint64 // passStarts when the Delete removed id from the index
}

// reportIndex is the in-memory truth of which reports make each history.
type reportIndex struct {
	mu        sync.Mutex
	next      uint64 // the next seq to hand out
	inst      map[string]*history
	records   int    // in the log
	live      int    // in the histories: the other records are dead
	sweepFrom uint64 // where the running sweep pass goes on (0: none running)
	// passStarts numbers the sweep passes started (counted when the pass
	// first judges records, under mu); passLimit is the seq limit of the
	// batch the running pass started in: it judges every record below.
	passStarts uint64
	passLimit  uint64
	force      bool // a pass is wanted whatever the counts (set at open)
	cuts       []pendingCut
}

// register adds id with an empty history unless it is there.
func (x *reportIndex) register(id string) {
	x.mu.Lock()
	if x.inst[id] == nil {
		x.inst[id] = &history{}
	}
	x.mu.Unlock()
}

// sweepWanted says whether the next report transaction should sweep.
func (x *reportIndex) sweepWanted() bool {
	dead := x.records - x.live
	return x.force || x.sweepFrom != 0 || (dead >= minSweepDead && dead > x.live)
}

// reportOp is one queued status report.
type reportOp struct {
	id   string
	data []byte // EncodeReport
	r    status.Report
	res  chan error // buffered
	h    *history   // set when the batch takes it
	seq  uint64
}

// reportQueue holds the reports waiting for the report committer.
type reportQueue struct {
	opQueue[*reportOp]
	// hook, when set (tests), is called by the committer before each
	// transaction, once its reports have their seqs.
	hook func()
	// sweepHook, when set (tests), is called by a sweep between two
	// stretches of sweepLockRecords records it judged.
	sweepHook func()
	// written counts the report bytes appended since reports.db was last
	// opened (the committer's).
	written int
}

// openReports opens (creating if needed) reports.db beside the open
// imds.db, migrates imds.db's histories into it once, and builds the
// index. It returns with s.rdb open.
func (s *Bolt) openReports() error {
	path := filepath.Join(filepath.Dir(s.path), ReportsFileName)
	s.rpath = path
	fresh := false
	if _, err := checkPath(path); errors.Is(err, fs.ErrNotExist) {
		fresh = true
	} else if err != nil {
		return err
	}
	rdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open reports store %s: %w", path, err)
	}
	err = rdb.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{rLog, rMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && fresh {
		// A new reports.db: no record any cut covers.
		err = s.db.Update(func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bCuts); err != nil {
				return err
			}
			_, err := tx.CreateBucket(bCuts)
			return err
		})
		if err != nil {
			err = fmt.Errorf("drop the report cuts of %s (%s is new): %w", s.path, ReportsFileName, err)
		}
	}
	if err == nil {
		err = s.migrate(rdb)
	}
	if err == nil {
		err = s.scanReports(rdb)
	}
	// The scan touched every page of the mapping: closing it drops them
	// from the process's RSS (they stay in the page cache).
	if cerr := rdb.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("open reports store %s: %w", path, err)
	}
	if s.rdb, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second}); err != nil {
		return fmt.Errorf("open reports store %s: %w", path, err)
	}
	return nil
}

// logValue is a log record's value.
func logValue(id string, data []byte) []byte {
	v := make([]byte, 0, binary.MaxVarintLen64+len(id)+len(data))
	v = binary.AppendUvarint(v, uint64(len(id)))
	v = append(v, id...)
	return append(v, data...)
}

// kLogID is the id's key in a large record's bucket (the report is at
// kReport).
var kLogID = []byte("i")

// putLog stores the record of report data of id at seq: a plain value
// when it takes at most a quarter page (every report the agent sends bar
// long errors), else a bucket of its own holding id and report, so that
// the large report gets pages of its own. As a plain value it would share
// the log's last leaf (bbolt keeps at least two values a leaf and does not
// split a leaf of four), which every later append rewrites whole.
func putLog(l *bolt.Bucket, seq uint64, id string, data []byte, pageSize int) error {
	k := binary.BigEndian.AppendUint64(nil, seq)
	if v := logValue(id, data); len(v) <= pageSize/4 {
		return l.Put(k, v)
	}
	b, err := l.CreateBucket(k)
	if err != nil {
		return err
	}
	if err := b.Put(kLogID, []byte(id)); err != nil {
		return err
	}
	return b.Put(kReport, data)
}

// logRecord returns the id and report of the log record at key k whose
// cursor value is v (nil for a bucket).
func logRecord(l *bolt.Bucket, k, v []byte) (id, data []byte, ok bool) {
	if v != nil {
		return splitLogValue(v)
	}
	b := l.Bucket(k)
	if b == nil {
		return nil, nil, false
	}
	id, data = b.Get(kLogID), b.Get(kReport)
	return id, data, id != nil && data != nil
}

// getLog returns the record at seq; ok is false when there is none.
func getLog(l *bolt.Bucket, seq uint64) (id, data []byte, ok bool) {
	k := binary.BigEndian.AppendUint64(nil, seq)
	return logRecord(l, k, l.Get(k))
}

// splitLogValue returns the id and report of a log record's plain value.
func splitLogValue(v []byte) (id, data []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

// migrate copies the histories of a store written before reports.db
// (imds.db's status, laststatus) into rdb, oldest first per registered
// instance, unless rdb says it did; then drops them from imds.db. A
// crash anywhere repeats what is left: an unfinished copy is thrown away
// and made again, and a copy marked done is never made twice.
func (s *Bolt) migrate(rdb *bolt.DB) error {
	var done bool
	rdb.View(func(tx *bolt.Tx) error { done = tx.Bucket(rMeta).Get(kMigrated) != nil; return nil })
	if !done {
		// An unfinished copy of an earlier attempt goes first.
		err := rdb.Update(func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(rLog); err != nil {
				return err
			}
			_, err := tx.CreateBucket(rLog)
			return err
		})
		if err != nil {
			return err
		}
		type rec struct {
			seq  uint64
			id   string
			data []byte
		}
		var recs []rec
		recBytes := 0
		next := uint64(1)
		flush := func(last bool) error {
			err := rdb.Update(func(tx *bolt.Tx) error {
				l := tx.Bucket(rLog)
				l.FillPercent = 1.0
				for _, r := range recs {
					if err := putLog(l, r.seq, r.id, r.data, tx.DB().Info().PageSize); err != nil {
						return err
					}
				}
				m := tx.Bucket(rMeta)
				if err := m.Put(kNextSeq, binary.BigEndian.AppendUint64(nil, next)); err != nil {
					return err
				}
				if last {
					return m.Put(kMigrated, []byte(time.Now().UTC().Format(time.RFC3339)))
				}
				return nil
			})
			recs, recBytes = recs[:0], 0
			return err
		}
		err = s.db.View(func(tx *bolt.Tx) error {
			st, last := tx.Bucket(bStatus), tx.Bucket(bLast)
			return tx.Bucket(bInstances).ForEach(func(k, _ []byte) error {
				id := string(k)
				add := func(data []byte) error {
					recs = append(recs, rec{next, id, data})
					recBytes += len(data)
					next++
					if len(recs) >= migrateBatch || recBytes >= migrateBatchBytes {
						return flush(false)
					}
					return nil
				}
				n := 0
				if st != nil {
					if h := st.Bucket(k); h != nil {
						if err := forEachReport(h, func(_, data []byte) error {
							if data == nil {
								return nil
							}
							n++
							return add(data)
						}); err != nil {
							return err
						}
					}
				}
				if n == 0 && last != nil {
					if l := last.Get(k); l != nil {
						return add(l)
					}
				}
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("copy status histories from %s: %w", s.path, err)
		}
		if err := flush(true); err != nil {
			return fmt.Errorf("copy status histories from %s: %w", s.path, err)
		}
	}
	// Copied (now or by an earlier open): imds.db's histories go.
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bStatus, bLast, bHistSize} {
			if tx.Bucket(b) != nil {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop the migrated status histories from %s: %w", s.path, err)
	}
	return nil
}

// scanReports builds s.idx from rdb and imds.db's registrations and cuts.
func (s *Bolt) scanReports(rdb *bolt.DB) error {
	x := &s.idx
	x.inst = map[string]*history{}
	x.next = 1
	cuts := map[string]uint64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bInstances).ForEach(func(k, _ []byte) error {
			x.inst[string(k)] = &history{}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bCuts).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				c := binary.BigEndian.Uint64(v)
				cuts[string(k)] = c
				// Seqs are handed out before their transaction commits:
				// a crash can leave a cut above the persisted next seq.
				// Never hand one out again (a new report under a cut is
				// dead at the next open).
				x.next = max(x.next, c+1)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read the registrations and report cuts of %s: %w", s.path, err)
	}
	err = rdb.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(rMeta).Get(kNextSeq); len(v) == 8 {
			x.next = max(x.next, binary.BigEndian.Uint64(v))
		}
		c := tx.Bucket(rLog).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			x.records++
			if len(k) != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			x.next = max(x.next, seq+1)
			id, data, ok := logRecord(tx.Bucket(rLog), k, v)
			if !ok {
				continue
			}
			h := x.inst[string(id)]
			if h == nil || seq <= cuts[string(id)] {
				continue
			}
			x.live += 1 - h.add(seq, len(data))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id, c := range cuts {
		x.cuts = append(x.cuts, pendingCut{id: id, cut: c})
	}
	x.force = x.records > x.live || len(x.cuts) > 0
	return nil
}

// startReportCommitter readies s's report committer, which starts with
// the first report, or at once when the store opened with dead records to
// sweep.
func (s *Bolt) startReportCommitter() {
	s.idx.mu.Lock()
	sweep := s.idx.sweepWanted()
	s.idx.mu.Unlock()
	s.rq.start(s.reportLoop, sweep)
}

// stopReportCommitter lets the report committer commit what is queued and
// waits for it to end.
func (s *Bolt) stopReportCommitter() { s.rq.stop() }

// AppendStatus implements Store. The report is appended to reports.db's
// log by the report committer, in one transaction with every other report
// queued meanwhile; the oldest reports of id's history past its bounds
// become dead (the newest always stays). It returns once the report is
// durable and every running Feed has seen it.
func (s *Bolt) AppendStatus(ctx context.Context, id string, r status.Report) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := EncodeReport(r)
	if err != nil {
		return fmt.Errorf("encode status of %q: %w", id, err)
	}
	op := &reportOp{id: id, data: data, r: r, res: make(chan error, 1)}
	if !s.rq.push(op) {
		return ErrClosed
	}
	if err := <-op.res; err != nil {
		return fmt.Errorf("append status of %q: %w", id, err)
	}
	return nil
}

func (s *Bolt) reportLoop() {
	q := &s.rq
	for {
		ops, closed := q.take()
		s.idx.mu.Lock()
		sweep := s.idx.sweepWanted()
		s.idx.mu.Unlock()
		if len(ops) == 0 && (!sweep || closed) {
			if closed {
				return
			}
			q.wait()
			continue
		}
		if !s.commitReportBatch(ops, sweep) && len(ops) == 0 {
			// A sweep alone failed (reports.db cannot be written or
			// opened): wait for the next report instead of spinning.
			if closed {
				return
			}
			q.wait()
		}
	}
}

// commitReportBatch writes ops (and, when sweep, a bounded sweep of dead
// records) in one reports.db transaction, then updates the index,
// delivers the events and answers each op. It returns false when the
// transaction failed.
func (s *Bolt) commitReportBatch(ops []*reportOp, sweep bool) bool {
	x := &s.idx
	// Membership and seqs, at batch time.
	var taken []*reportOp
	x.mu.Lock()
	first := x.next
	for _, op := range ops {
		if op.h = x.inst[op.id]; op.h == nil || op.h.deleting {
			// Unknown, or being deleted: a report taken now would get a
			// seq above the Delete's cut.
			op.res <- ErrNotFound
			continue
		}
		op.seq = x.next
		x.next++
		taken = append(taken, op)
	}
	next := x.next
	x.mu.Unlock()
	if len(taken) == 0 && !sweep {
		return true
	}
	if s.rq.hook != nil {
		s.rq.hook()
	}
	if s.reportsDown() != nil {
		s.remapReports() // an earlier reopen failed: try again
	}
	s.rq.commits.Add(1)
	var swept sweepResult
	err := s.reportsTx(true, func(tx *bolt.Tx) error {
		l := tx.Bucket(rLog)
		l.FillPercent = 1.0
		if sweep {
			var err error
			if swept, err = s.sweep(l, first); err != nil {
				return err
			}
		}
		for _, op := range taken {
			if err := putLog(l, op.seq, op.id, op.data, tx.DB().Info().PageSize); err != nil {
				return err
			}
		}
		return tx.Bucket(rMeta).Put(kNextSeq, binary.BigEndian.AppendUint64(nil, next))
	})
	if err != nil {
		s.probe.failed(fmt.Errorf("write reports store %s: %w", s.rpath, err))
		if s.reportsDown() == nil {
			err = fmt.Errorf("commit %d status reports to %s: %w", len(taken), s.rpath, err)
		} // else err is rerr, naming the file already
		for _, op := range taken {
			op.res <- err
		}
		return false
	}
	f := &s.feed
	f.mu.Lock()
	x.mu.Lock()
	x.records += len(taken) - swept.deleted
	passEnded := false
	if sweep {
		x.sweepFrom = swept.from
		if swept.from == 0 {
			passEnded = true
			x.force = false
		}
	}
	var cuts []pendingCut
	if passEnded && len(x.cuts) > 0 {
		kept := x.cuts[:0]
		for _, c := range x.cuts {
			if x.passStarts > c.after && x.passLimit > c.cut {
				cuts = append(cuts, c)
			} else {
				kept = append(kept, c)
			}
		}
		x.cuts = kept
	}
	deliver := make([]bool, len(taken))
	for i, op := range taken {
		if op.h.gone {
			continue // the instance was deleted meanwhile: dead
		}
		// Live, or its Delete is not committed yet: kept and delivered,
		// as before the Delete (endDelete counts it among the dead if
		// the Delete commits; its seq is at most the cut).
		x.live += 1 - op.h.add(op.seq, len(op.data))
		deliver[i] = true
	}
	x.mu.Unlock()
	for i, op := range taken {
		if deliver[i] {
			f.deliver(func() Event { rc := op.r; return Event{Type: EventStatus, ID: op.id, Status: &rc} })
		}
	}
	f.mu.Unlock()
	for _, op := range taken {
		op.res <- nil
	}
	if len(cuts) > 0 {
		s.dropCuts(cuts)
	}
	// The batch's appends read the log's last leaves through the mapping.
	s.reportsTx(false, func(tx *bolt.Tx) error { dropMappedTx(tx); return nil })
	written := 0
	for _, op := range taken {
		written += len(op.data)
	}
	if s.rq.written += written; swept.visited > 0 || s.rq.written >= remapBytes {
		s.rq.written = 0
		s.remapReports()
	}
	return true
}

// openReportsFile opens reports.db (a variable: tests make it fail).
var openReportsFile = func(path string) (*bolt.DB, error) {
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}

// remapBytes is how many bytes of reports are appended between two
// reopens of reports.db: bbolt writes pages with pwrite but reads the
// newest leaf through its mapping at the next append, so every page
// appended stays in the process's RSS until the mapping goes.
//
// The trade-off, measured (2026-12-03, 2-core box, load ~4): a reopen of
// a reports.db of 131,072 records (23 MB) costs ~46 µs of CPU (~70 µs
// wall, reads and the committer wait for it), once per 8 MiB, i.e. per
// ~49,000 small reports: well under 0.01 µs a report, lost in the noise
// of BenchmarkBoltReportIngest (5.5-6.6 cpu-µs/report with and without it,
// alternately, 5 runs each of 60000x). What it saves: without it the pages
// appended stay mapped until the next sweep's reopen, and a sweep waits
// until the dead records outnumber the live ones, so RSS grows by up to
// the size of the live histories (~45 MB for 1,000 full ones of small
// reports) before it drops; with it, by at most 8 MiB (the benchmark's
// rss-file-MB: 13.6-14.0 with, 17.5-18.3 without, on a 22 MB log).
var remapBytes = 8 << 20 // a variable for the tests

// reportsTx runs fn in a transaction of reports.db (write: the report
// committer's only).
func (s *Bolt) reportsTx(write bool, fn func(*bolt.Tx) error) error {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	if s.rdb == nil {
		return s.rerr
	}
	if write {
		return s.rdb.Update(fn)
	}
	return s.rdb.View(fn)
}

// remapReports closes and reopens reports.db after a sweep transaction:
// the sweep read pages all over the file through bbolt's mapping, which
// would stay in the process's RSS (as after the open's scan); a new
// mapping starts with the few pages appends and reads touch. The file
// stays locked by imds.db's lock meanwhile. A reopen that fails leaves
// s.rdb nil and s.rerr saying why: reports and reads fail with it, Probe
// fails with it, and the next report batch tries again (reopenReports).
func (s *Bolt) remapReports() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.rdb != nil {
		err := s.rdb.Close()
		s.rdb = nil
		if err != nil {
			s.reportsLost(err)
			return
		}
	}
	rdb, err := openReportsFile(s.rpath)
	if err != nil {
		s.reportsLost(err)
		return
	}
	s.rdb, s.rerr = rdb, nil
}

// reportsLost records that reports.db could not be reopened (s.rmu held).
func (s *Bolt) reportsLost(err error) {
	s.rerr = fmt.Errorf("reports store %s is not open: reopening it failed: %w", s.rpath, err)
	s.probe.failed(s.rerr)
}

// reportsDown says why reports.db is not open, nil when it is.
func (s *Bolt) reportsDown() error {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	return s.rerr
}

type sweepResult struct {
	deleted int
	visited int
	from    uint64 // where the pass goes on; 0 when it ended
}

// sweep deletes dead records of log l in key order from the index's
// sweep position, below seq limit (this batch's own), at most
// maxSweepDeletes of them after reading at most maxSweepVisit.
func (s *Bolt) sweep(l *bolt.Bucket, limit uint64) (sweepResult, error) {
	x := &s.idx
	x.mu.Lock()
	from := x.sweepFrom
	if from == 0 {
		// A new pass: it judges, from here on, every record below limit.
		x.passStarts++
		x.passLimit = limit
	}
	x.mu.Unlock()
	type deadRec struct {
		k      []byte
		bucket bool
	}
	var dead []deadRec
	res := sweepResult{}
	c := l.Cursor()
	k, v := c.Seek(binary.BigEndian.AppendUint64(nil, from))
	visited := 0
	x.mu.Lock()
	for ; k != nil; k, v = c.Next() {
		if len(dead) >= maxSweepDeletes || visited >= maxSweepVisit {
			res.from = binary.BigEndian.Uint64(k)
			break
		}
		if len(k) == 8 && binary.BigEndian.Uint64(k) >= limit {
			break // this batch's and later: not judged here
		}
		visited++
		live := false
		if id, _, ok := logRecord(l, k, v); ok && len(k) == 8 {
			if h := x.inst[string(id)]; h != nil && !h.gone && h.has(binary.BigEndian.Uint64(k)) {
				live = true
			}
		}
		if !live {
			dead = append(dead, deadRec{bytes.Clone(k), v == nil})
		}
		if visited%sweepLockRecords == 0 {
			// Let a publish, a registration or a Delete through. A record
			// judged live may die meanwhile (trimmed, deleted): a later
			// pass takes it (a Delete's cut waits for a pass started after
			// it); a record judged dead never lives again.
			x.mu.Unlock()
			if s.rq.sweepHook != nil {
				s.rq.sweepHook()
			}
			x.mu.Lock()
		}
	}
	x.mu.Unlock()
	for _, d := range dead {
		var err error
		if d.bucket {
			err = l.DeleteBucket(d.k)
		} else {
			err = l.Delete(d.k)
		}
		if err != nil {
			return res, err
		}
	}
	res.deleted, res.visited = len(dead), visited
	return res, nil
}

// dropCuts removes cuts from imds.db that a sweep pass made useless (a
// later Delete's larger cut stays). A crash first leaves them: harmless.
func (s *Bolt) dropCuts(cuts []pendingCut) {
	op := &writeOp{tx: func(tx *bolt.Tx) error {
		b := tx.Bucket(bCuts)
		for _, c := range cuts {
			if v := b.Get([]byte(c.id)); len(v) == 8 && binary.BigEndian.Uint64(v) == c.cut {
				if err := b.Delete([]byte(c.id)); err != nil {
					return err
				}
			}
		}
		return nil
	}, res: make(chan error, 1)}
	s.enqueue(op) // answered by the main committer; nobody waits
}

// beginDelete marks id deleting inside Delete's transaction: the report
// committer refuses its reports from here on. It returns the cut to write
// (every seq handed out to id is at most it) and id's history (nil if
// none), for endDelete. Nothing else changes before the commit: a history
// taken out here would drop a raced report and let a sweep delete the
// history's records, and a Delete whose commit fails would hide them
// (until a restart, or for good once swept).
func (x *reportIndex) beginDelete(id string) (cut uint64, h *history) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if h = x.inst[id]; h != nil {
		h.deleting = true
	}
	return x.next - 1, h
}

// endDelete finishes a Delete (under the feed's lock, before its event):
// committed, id leaves the index, its reports are dead and its cut waits
// for a sweep pass; not committed, its reports are taken again.
func (x *reportIndex) endDelete(id string, cut uint64, h *history, committed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if h != nil {
		h.deleting = false
	}
	if !committed {
		return
	}
	if h != nil {
		h.gone = true
		if x.inst[id] == h {
			delete(x.inst, id)
		}
		x.live -= len(h.seqs)
	}
	// A pass running now may have judged id's records live already, or
	// started in the batch of a report that raced this Delete (a batch
	// never judges its own): only a later pass counts (endDelete runs
	// after beginDelete, so passStarts here is at least what it was then).
	x.cuts = append(x.cuts, pendingCut{id: id, cut: cut, after: x.passStarts})
}

// newestSeqs returns the newest live seq of each id (0: none).
func (x *reportIndex) newestSeqs(ids []string) []uint64 {
	out := make([]uint64, len(ids))
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, id := range ids {
		if h := x.inst[id]; h != nil && len(h.seqs) > 0 {
			out[i] = h.seqs[len(h.seqs)-1]
		}
	}
	return out
}

// lastStatuses returns the newest report of each id (nil: none), read in
// one reports.db transaction.
func (s *Bolt) lastStatuses(ids []string) ([]*status.Report, error) {
	seqs := s.idx.newestSeqs(ids)
	out := make([]*status.Report, len(ids))
	err := s.reportsTx(false, func(tx *bolt.Tx) error {
		l := tx.Bucket(rLog)
		for i, seq := range seqs {
			if seq == 0 {
				continue
			}
			_, data, ok := getLog(l, seq)
			if !ok {
				continue // swept meanwhile: a newer one replaced it
			}
			var r status.Report
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("decode last status of %q: %w", ids[i], err)
			}
			out[i] = &r
		}
		dropMappedTx(tx)
		return nil
	})
	return out, err
}

// StatusHistory implements Store.
func (s *Bolt) StatusHistory(ctx context.Context, id string) ([]status.Report, error) {
	release, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	x := &s.idx
	x.mu.Lock()
	h := x.inst[id]
	var seqs []uint64
	if h != nil {
		seqs = slices.Clone(h.seqs)
	}
	x.mu.Unlock()
	if h == nil {
		return nil, ErrNotFound
	}
	out := make([]status.Report, 0, len(seqs))
	err = s.reportsTx(false, func(tx *bolt.Tx) error {
		l := tx.Bucket(rLog)
		for _, seq := range seqs {
			_, data, ok := getLog(l, seq)
			if !ok {
				continue // trimmed and swept meanwhile
			}
			var r status.Report
			if err := json.Unmarshal(data, &r); err != nil {
				return fmt.Errorf("decode status of %q: %w", id, err)
			}
			out = append(out, r)
		}
		dropMappedTx(tx)
		return nil
	})
	return out, err
}
