package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names of the bbolt layout.
var (
	bInstances  = []byte("instances")   // id -> Registration JSON
	bAddresses  = []byte("addresses")   // address -> id
	bInterfaces = []byte("interfaces")  // host interface -> id
	bConfigs    = []byte("configs")     // id -> stamped document JSON
	bGens       = []byte("generations") // id -> last generation (never deleted)
	bMeta       = []byte("meta")        // the store's own keys: kEpoch, kProbe
	// bCuts (reports.go): id -> the last report seq of its deleted incarnation

	// Stores written before reports.db (migrated at open, reports.go):
	bStatus   = []byte("status")      // id -> bucket of seq(8 bytes BE) -> report JSON, or bucket of "r" -> report JSON (see kReport)
	bLast     = []byte("laststatus")  // id -> newest report JSON (stores before the history kept it)
	bHistSize = []byte("historysize") // id -> reports (8 bytes BE) and bytes (8 bytes BE) of its status history
)

// Keys of the meta bucket.
var (
	kEpoch = []byte("epoch") // 16 hex digits, random, set when the store is created
	kProbe = []byte("probe") // the write probe's last time (Probe)
)

// FileName is the database file inside a data directory.
const FileName = "imds.db"

// Bolt is the bbolt Store: the registry and documents in imds.db, status
// reports in reports.db beside it (reports.go). Every write is fsynced
// before it returns (bbolt's default); status reports that arrive together
// share one transaction of reports.db and its fsync, made by a committer
// of their own, so a publish never waits for them.
type Bolt struct {
	db     *bolt.DB
	path   string
	epoch  string
	mu     sync.RWMutex
	closed bool
	probe  probeState
	feed   boltFeed
	queue  opQueue[*writeOp] // the main committer's (boltcommit.go)

	// Status reports: reports.db, its committer and the index (reports.go).
	rmu   sync.RWMutex // rdb: held to use it, held to reopen it
	rdb   *bolt.DB     // nil while a reopen failed
	rerr  error        // why rdb is nil (rmu)
	rpath string
	rq    reportQueue
	idx   reportIndex

	// commitFault, when set (tests), fails each transaction of imds.db
	// after its change was made, as a failed commit does (rolled back).
	commitFault atomic.Pointer[func() error]
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating if needed) the store in dir: imds.db, then
// reports.db. A second process opening the same dir fails after a second
// instead of corrupting it (imds.db's lock, taken first). An existing file
// is verified first (verify.go): an empty, truncated or damaged one is
// refused with a *DamagedError naming it and left as it is, never
// replaced. A store written before reports.db has its histories moved
// there (reports.go).
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	if _, err := checkPath(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	db, epoch, err := openMain(path)
	if err != nil {
		return nil, err
	}
	s := &Bolt{db: db, path: path, epoch: epoch}
	if err := s.openReports(); err != nil {
		db.Close()
		return nil, err
	}
	s.startCommitter()
	s.startReportCommitter()
	return s, nil
}

// openMain opens or creates the store file at path without verifying
// it, creating the buckets and, for a new store, its epoch.
func openMain(path string) (*bolt.DB, string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, "", fmt.Errorf("open store %s: %w", path, err)
	}
	var epoch string
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bInstances, bAddresses, bInterfaces, bConfigs, bGens, bMeta, bCuts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if e := meta.Get(kEpoch); e != nil {
			epoch = string(e)
			return nil
		}
		// A new store, or one written before epochs existed: either way
		// no guest has seen an ETag carrying this epoch.
		epoch = NewEpoch()
		return meta.Put(kEpoch, []byte(epoch))
	})
	if err != nil {
		db.Close()
		return nil, "", fmt.Errorf("init store %s: %w", path, err)
	}
	return db, epoch, nil
}

// Epoch implements Store.
func (s *Bolt) Epoch() string { return s.epoch }

// enter checks that ctx is live and the store open, and holds the store
// open (s.mu for reading) until release is called.
func (s *Bolt) enter(ctx context.Context) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

func (s *Bolt) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	release, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer release()
	var fnErr error
	err = s.db.Update(func(tx *bolt.Tx) error {
		if fnErr = fn(tx); fnErr != nil {
			return fnErr
		}
		if f := s.commitFault.Load(); f != nil {
			return (*f)()
		}
		return nil
	})
	if err != nil && fnErr == nil {
		// The commit failed: the file could not be written (disk full,
		// read-only, I/O error). Probe reports it until a probe passes.
		s.probe.failed(fmt.Errorf("write store %s: %w", s.path, err))
	}
	return err
}

func (s *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	release, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer release()
	return s.db.View(fn)
}

// Load implements Store.
func (s *Bolt) Load(ctx context.Context) ([]Record, error) {
	var out []Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bInstances).ForEach(func(k, v []byte) error {
			rec, err := readRecord(tx, string(k), v)
			if err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
		if err != nil {
			return err
		}
		ids := make([]string, len(out))
		for i := range out {
			ids[i] = out[i].ID
		}
		last, err := s.lastStatuses(ids)
		if err != nil {
			return err
		}
		for i := range out {
			out[i].LastStatus = last[i]
		}
		dropMappedTx(tx) // the whole file was read
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	return out, nil
}

func readRecord(tx *bolt.Tx, id string, regJSON []byte) (Record, error) {
	rec := Record{ID: id}
	if err := json.Unmarshal(regJSON, &rec.Registration); err != nil {
		return rec, fmt.Errorf("decode registration of %q: %w", id, err)
	}
	if c := tx.Bucket(bConfigs).Get([]byte(id)); c != nil {
		rec.Config = append([]byte(nil), c...)
		var g struct {
			Generation int64 `json:"generation"`
		}
		if err := json.Unmarshal(c, &g); err != nil {
			return rec, fmt.Errorf("decode config of %q: %w", id, err)
		}
		rec.Generation = g.Generation
	}
	return rec, nil
}

// Apply implements Store.
func (s *Bolt) Apply(ctx context.Context, id string, c Change) (Record, error) {
	var rec Record
	err := s.write(ctx, func(tx *bolt.Tx) error {
		key := []byte(id)
		insts := tx.Bucket(bInstances)
		cur := insts.Get(key)
		if c.Register != nil {
			if err := register(tx, id, cur, c.Register); err != nil {
				return err
			}
		} else if cur == nil {
			return ErrNotFound
		}
		if c.Publish != nil {
			configs := tx.Bucket(bConfigs)
			curGen := int64(0)
			if cfg := configs.Get(key); cfg != nil {
				var g struct {
					Generation int64 `json:"generation"`
				}
				if err := json.Unmarshal(cfg, &g); err != nil {
					return fmt.Errorf("decode config of %q: %w", id, err)
				}
				curGen = g.Generation
			}
			if c.IfMatch != nil && *c.IfMatch != curGen {
				return &PreconditionError{Want: *c.IfMatch, Current: curGen}
			}
			gens := tx.Bucket(bGens)
			last := int64(0)
			if v := gens.Get(key); len(v) == 8 {
				last = int64(binary.BigEndian.Uint64(v))
			}
			next := last + 1
			doc, err := c.Publish(id, next)
			if err != nil {
				return err
			}
			if err := gens.Put(key, binary.BigEndian.AppendUint64(nil, uint64(next))); err != nil {
				return err
			}
			if err := configs.Put(key, doc); err != nil {
				return err
			}
		}
		var err error
		rec, err = readRecord(tx, id, insts.Get(key))
		return err
	}, func() Event { return Event{Type: EventChanged, ID: id, Record: rec} }, func(committed bool) {
		if !committed {
			return
		}
		// A registration committed: the report committer takes its
		// reports from now on.
		if c.Register != nil {
			s.idx.register(id)
		}
		// The last status as the feed has delivered it so far (the
		// feed's lock is held): the event never carries an older one
		// than a status event before it.
		if last, err := s.lastStatuses([]string{id}); err == nil {
			rec.LastStatus = last[0]
		}
	})
	return rec, err
}

// register replaces id's registration inside tx, enforcing ownership.
func register(tx *bolt.Tx, id string, curJSON []byte, reg *Registration) error {
	key := []byte(id)
	addrs, ifaces := tx.Bucket(bAddresses), tx.Bucket(bInterfaces)
	for _, a := range reg.Addresses {
		if owner := addrs.Get([]byte(a)); owner != nil && string(owner) != id {
			return &ConflictError{Kind: "address", Value: a, Owner: string(owner)}
		}
	}
	if reg.HostInterface != "" {
		if owner := ifaces.Get([]byte(reg.HostInterface)); owner != nil && string(owner) != id {
			return &ConflictError{Kind: "hostInterface", Value: reg.HostInterface, Owner: string(owner)}
		}
	}
	if curJSON != nil {
		var old Registration
		if err := json.Unmarshal(curJSON, &old); err != nil {
			return fmt.Errorf("decode registration of %q: %w", id, err)
		}
		if err := unindex(tx, old); err != nil {
			return err
		}
	}
	for _, a := range reg.Addresses {
		if err := addrs.Put([]byte(a), key); err != nil {
			return err
		}
	}
	if reg.HostInterface != "" {
		if err := ifaces.Put([]byte(reg.HostInterface), key); err != nil {
			return err
		}
	}
	b, err := json.Marshal(reg)
	if err != nil {
		return err
	}
	return tx.Bucket(bInstances).Put(key, b)
}

func unindex(tx *bolt.Tx, old Registration) error {
	for _, a := range old.Addresses {
		if err := tx.Bucket(bAddresses).Delete([]byte(a)); err != nil {
			return err
		}
	}
	if old.HostInterface != "" {
		if err := tx.Bucket(bInterfaces).Delete([]byte(old.HostInterface)); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store. Its transaction also writes id's report cut
// (reports.go): the reports of this incarnation of id stay in reports.db
// until a sweep, dead.
func (s *Bolt) Delete(ctx context.Context, id string) error {
	var (
		cut  uint64
		hist *history
		took bool
	)
	return s.write(ctx, func(tx *bolt.Tx) error {
		key := []byte(id)
		cur := tx.Bucket(bInstances).Get(key)
		if cur == nil {
			return ErrNotFound
		}
		var old Registration
		if err := json.Unmarshal(cur, &old); err != nil {
			return fmt.Errorf("decode registration of %q: %w", id, err)
		}
		if err := unindex(tx, old); err != nil {
			return err
		}
		for _, b := range [][]byte{bInstances, bConfigs} {
			if err := tx.Bucket(b).Delete(key); err != nil {
				return err
			}
		}
		// Last: from here on the report committer refuses id's reports,
		// and every seq it handed out to id is at most cut.
		cut, hist = s.idx.beginDelete(id)
		took = true
		return tx.Bucket(bCuts).Put(key, binary.BigEndian.AppendUint64(nil, cut))
	}, func() Event { return Event{Type: EventDeleted, ID: id} }, func(committed bool) {
		if took {
			s.idx.endDelete(id, cut, hist, committed)
		}
	})
}

// kReport is the one key of a report's bucket in a status history.
var kReport = []byte("r")

// The layout before reports.db (read by the migration and recovery): a
// status history (bStatus/<id>) maps seq (8 bytes BE, the history
// bucket's own sequence) to a bucket holding the report at kReport. The
// bucket gives a large report pages of its own: bbolt packs at least two
// values into a leaf page, so a 64 KiB report stored as a plain value was
// rewritten, with its neighbours, by every later append and delete near
// it. A report of at most a quarter page is a plain value (putReport);
// stores written before that hold small reports in inline buckets, which
// are read, trimmed and replaced the same way.

// putReport stores report data at key k of history h: a report of at most
// a quarter page (nearly every report) as a plain value, a larger one in a
// bucket of its own. A quarter page is where bbolt stops inlining a bucket,
// so a small report's bucket was inlined anyway and only cost its header
// (16 bytes), the inline page header and a leaf element (~50 bytes more than
// the report); as plain values a full history of small reports takes a
// third less of the file (BenchmarkBoltReportIngest's file-B/kept-report:
// 384 → 257). A large report still gets pages of its own, so appends next to
// it never rewrite it.
func putReport(h *bolt.Bucket, k, data []byte, pageSize int) error {
	if len(data) <= pageSize/4 {
		return h.Put(k, data)
	}
	rb, err := h.CreateBucket(k)
	if err != nil {
		return err
	}
	return rb.Put(kReport, data)
}

// historyReport returns the report at key k of history h, whose cursor
// value is v (nil for a bucket).
func historyReport(h *bolt.Bucket, k, v []byte) []byte {
	if v != nil {
		return v
	}
	if rb := h.Bucket(k); rb != nil {
		return rb.Get(kReport)
	}
	return nil
}

// forEachReport calls fn with each report of history h, oldest first.
func forEachReport(h *bolt.Bucket, fn func(k, data []byte) error) error {
	return h.ForEach(func(k, v []byte) error { return fn(k, historyReport(h, k, v)) })
}

// RaiseGeneration implements Store.
func (s *Bolt) RaiseGeneration(ctx context.Context, id string, floor int64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		key := []byte(id)
		if tx.Bucket(bInstances).Get(key) == nil {
			return ErrNotFound
		}
		gens := tx.Bucket(bGens)
		if v := gens.Get(key); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= floor {
			return nil
		}
		return gens.Put(key, binary.BigEndian.AppendUint64(nil, uint64(floor)))
	})
}

// Close implements Store. The changes already queued are committed; it
// waits for running transactions.
func (s *Bolt) Close() error {
	s.stopReportCommitter()
	s.stopCommitter()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var rerr error
	s.rmu.Lock()
	if s.rdb != nil {
		rerr = s.rdb.Close()
	}
	s.rmu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("close reports store: %w", rerr)
	}
	return nil
}
