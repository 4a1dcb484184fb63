package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/prewarm/prewarm/shared/status"
)

func registerIDs(t *testing.T, s *Bolt, ids ...string) {
	t.Helper()
	for i, id := range ids {
		if _, err := s.Apply(context.Background(), id, Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.7.%d.%d", i/250, i%250+1)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// seqsOf returns the report seqs of id's history, oldest first.
func seqsOf(t *testing.T, s *Bolt, id string) []uint64 {
	t.Helper()
	h, err := s.StatusHistory(context.Background(), id)
	if err != nil {
		t.Fatalf("history of %s: %v", id, err)
	}
	out := make([]uint64, len(h))
	for i, r := range h {
		out[i] = r.Seq
	}
	return out
}

// wantRun checks that got is from..to, step 1.
func wantRun(t *testing.T, what string, got []uint64, from, to uint64) {
	t.Helper()
	if to < from {
		if len(got) != 0 {
			t.Fatalf("%s: %d reports (%v...), want none", what, len(got), got[:min(3, len(got))])
		}
		return
	}
	if uint64(len(got)) != to-from+1 || got[0] != from || got[len(got)-1] != to {
		t.Fatalf("%s: %d reports %v...%v, want %d..%d", what, len(got), got[:min(3, len(got))], got[max(0, len(got)-3):], from, to)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("%s: %d after %d", what, got[i], got[i-1])
		}
	}
}

// logKeys is how many records reports.db's log holds.
func logKeys(t *testing.T, s *Bolt) int {
	t.Helper()
	n := 0
	s.reportsTx(false, func(tx *bolt.Tx) error { n = tx.Bucket(rLog).Stats().KeyN; return nil })
	return n
}

// A restart keeps each history (the newest MaxStatusHistory within
// MaxStatusHistoryBytes, in order) and the last status, rebuilt from the
// log; new reports go on from there.
func TestBoltReportsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a", "b", "c")
	for i := uint64(1); i <= MaxStatusHistory+40; i++ {
		for _, id := range []string{"a", "b"} {
			if err := s.AppendStatus(ctx, id, tinyReport(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := uint64(1); i <= 30; i++ { // over the byte budget: the newest 16
		if err := s.AppendStatus(ctx, "c", bigReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	keep := uint64(MaxStatusHistoryBytes / len(mustEncode(t, bigReport(30))))
	s.Close()
	s = open(t, dir)
	wantRun(t, "a after restart", seqsOf(t, s, "a"), 41, MaxStatusHistory+40)
	wantRun(t, "b after restart", seqsOf(t, s, "b"), 41, MaxStatusHistory+40)
	wantRun(t, "c after restart", seqsOf(t, s, "c"), 30-keep+1, 30)
	recs, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		want := uint64(MaxStatusHistory + 40)
		if r.ID == "c" {
			want = 30
		}
		if r.LastStatus == nil || r.LastStatus.Seq != want {
			t.Fatalf("%s: last status %+v, want seq %d", r.ID, r.LastStatus, want)
		}
	}
	if err := s.AppendStatus(ctx, "a", tinyReport(1000)); err != nil {
		t.Fatal(err)
	}
	h := seqsOf(t, s, "a")
	if len(h) != MaxStatusHistory || h[0] != 42 || h[len(h)-1] != 1000 {
		t.Fatalf("a after one more: %d reports %d..%d", len(h), h[0], h[len(h)-1])
	}
}

// A deleted and re-registered id never shows the reports of its earlier
// incarnation: not at once, not after a reopen, and not when a report
// raced the delete (taken by the report committer before the delete,
// committed after it: its record is in the file, below the cut).
func TestBoltDeleteCutsReports(t *testing.T) {
	ctx := context.Background()
	f := newCommitFixture(t, 0)
	s := f.s
	dir := filepath.Dir(s.path)
	registerIDs(t, s, "a", "b")
	for i := uint64(1); i <= 5; i++ {
		if err := s.AppendStatus(ctx, "a", tinyReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A report of a, held after it got its seq.
	entered, unblock := holdNextBatch(s)
	raced := f.appendAsync("a", tinyReport(6))
	<-entered
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	registerIDs(t, s, "a")
	close(unblock)
	if err := <-raced; err != nil {
		t.Fatalf("the report that raced the delete: %v", err)
	}
	wantRun(t, "re-registered a", seqsOf(t, s, "a"), 1, 0)
	deleted := false
	for range len(f.events) {
		switch e := <-f.events; {
		case e.Type == EventDeleted && e.ID == "a":
			deleted = true
		case deleted && e.Type == EventStatus && e.ID == "a":
			t.Fatalf("status of a delivered after its delete: %+v", e.Status)
		}
	}
	if !deleted {
		t.Fatal("no delete event")
	}
	if err := s.AppendStatus(ctx, "a", tinyReport(100)); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "a's new report", seqsOf(t, s, "a"), 100, 100)
	// The raced record is in the file, dead.
	var inFile int
	s.reportsTx(false, func(tx *bolt.Tx) error {
		return tx.Bucket(rLog).ForEach(func(_, v []byte) error {
			if id, data, ok := splitLogValue(v); ok && string(id) == "a" && strings.Contains(string(data), `"seq":6,`) {
				inFile++
			}
			return nil
		})
	})
	if inFile != 1 {
		t.Fatalf("the raced report is %d times in the log, want once (dead)", inFile)
	}
	s.Close()
	s = open(t, dir)
	wantRun(t, "a after a reopen", seqsOf(t, s, "a"), 100, 100)
	// Deleted and not re-registered: refused, and nothing at reopen.
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendStatus(ctx, "a", tinyReport(101)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("report of a deleted id: %v, want ErrNotFound", err)
	}
	s.Close()
	s = open(t, dir)
	if _, err := s.StatusHistory(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("history of a deleted id after reopen: %v", err)
	}
	registerIDs(t, s, "a")
	wantRun(t, "a re-registered after reopen", seqsOf(t, s, "a"), 1, 0)
}

// Dead records (trimmed, or of deleted instances) are deleted in bulk
// once they outnumber the live ones, a bounded number a transaction: the
// log shrinks and every live report stays. The cut of a deleted instance
// goes from imds.db once a sweep pass removed what it covered.
func TestBoltSweepDeletesDeadRecords(t *testing.T) {
	ctx := context.Background()
	defer func(a, b int) { minSweepDead, maxSweepDeletes = a, b }(minSweepDead, maxSweepDeletes)
	minSweepDead, maxSweepDeletes = 50, 40
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a", "b", "gone")
	for i := uint64(1); i <= 20; i++ {
		if err := s.AppendStatus(ctx, "gone", tinyReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	total := uint64(3 * MaxStatusHistory)
	for i := uint64(1); i <= total; i++ {
		for _, id := range []string{"a", "b"} {
			if err := s.AppendStatus(ctx, id, tinyReport(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	written := int(2*total) + 20
	keys := logKeys(t, s)
	t.Logf("log keys: %d of %d written, %d live", keys, written, 2*MaxStatusHistory)
	// Dead ones stay while they are not more than the live ones (plus
	// the one sweep transaction's bound in flight).
	if keys >= written || keys > 2*(2*MaxStatusHistory)+maxSweepDeletes+1 {
		t.Fatalf("the log holds %d records of %d written, %d live: not swept", keys, written, 2*MaxStatusHistory)
	}
	wantRun(t, "a", seqsOf(t, s, "a"), total-MaxStatusHistory+1, total)
	wantRun(t, "b", seqsOf(t, s, "b"), total-MaxStatusHistory+1, total)
	var cut []byte
	s.db.View(func(tx *bolt.Tx) error { cut = tx.Bucket(bCuts).Get([]byte("gone")); return nil })
	if cut != nil {
		t.Errorf("the cut of the deleted instance is still in imds.db (%x) after the sweeps", cut)
	}
	s.Close()
	s = open(t, dir)
	wantRun(t, "a after reopen", seqsOf(t, s, "a"), total-MaxStatusHistory+1, total)
	if _, err := s.Apply(ctx, "gone", Change{Register: &Registration{Addresses: []string{"10.8.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "gone re-registered", seqsOf(t, s, "gone"), 1, 0)
}

// Records dead at open (trimmed ones not swept yet) are swept by the
// report committer without a report arriving; the histories stay.
func TestBoltSweepAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a")
	for i := uint64(1); i <= MaxStatusHistory+100; i++ {
		if err := s.AppendStatus(ctx, "a", tinyReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := logKeys(t, s); n != MaxStatusHistory+100 {
		t.Fatalf("log holds %d records, want %d (100 dead, below the sweep threshold)", n, MaxStatusHistory+100)
	}
	s.Close()
	s = open(t, dir)
	for range 2000 {
		if logKeys(t, s) == MaxStatusHistory {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := logKeys(t, s); n != MaxStatusHistory {
		t.Fatalf("log holds %d records after the open's sweep, want %d", n, MaxStatusHistory)
	}
	wantRun(t, "a", seqsOf(t, s, "a"), 101, MaxStatusHistory+100)
}

// oldStore makes a store of the layout before reports.db in dir: ids
// registered, then fn writes the old buckets into imds.db directly.
func oldStore(t *testing.T, dir string, ids []string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	registerIDs(t, s, ids...)
	s.Close()
	if err := os.Remove(filepath.Join(dir, ReportsFileName)); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bStatus, bLast, bHistSize} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return fn(tx)
	}); err != nil {
		t.Fatal(err)
	}
}

// oldHistory writes reports as id's history of the old layout: plain
// values (form "plain") or a bucket each with the report at kReport
// ("bucket", what stores before plain values wrote for every report).
func oldHistory(t *testing.T, tx *bolt.Tx, id, form string, reports ...status.Report) error {
	h, err := tx.Bucket(bStatus).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	for _, r := range reports {
		n, _ := h.NextSequence()
		k := binary.BigEndian.AppendUint64(nil, n)
		data := mustEncode(t, r)
		if form == "plain" {
			if err := h.Put(k, data); err != nil {
				return err
			}
			continue
		}
		rb, err := h.CreateBucket(k)
		if err != nil {
			return err
		}
		if err := rb.Put(kReport, data); err != nil {
			return err
		}
	}
	return nil
}

func reportRange(from, to uint64, mk func(uint64) status.Report) []status.Report {
	var out []status.Report
	for i := from; i <= to; i++ {
		out = append(out, mk(i))
	}
	return out
}

// oldLayoutFixture is a store of the old layout with every form of
// history: plain values past the bound, inline buckets with a large
// bucket among them, a laststatus alone, and an unregistered id's.
func oldLayoutFixture(t *testing.T, dir string) {
	oldStore(t, dir, []string{"plain", "buckets", "lastonly", "mixed"}, func(tx *bolt.Tx) error {
		if err := oldHistory(t, tx, "plain", "plain", reportRange(1, MaxStatusHistory+20, tinyReport)...); err != nil {
			return err
		}
		if err := oldHistory(t, tx, "buckets", "bucket", reportRange(1, 9, tinyReport)...); err != nil {
			return err
		}
		if err := oldHistory(t, tx, "buckets", "bucket", bigReport(10)); err != nil {
			return err
		}
		if err := oldHistory(t, tx, "mixed", "bucket", reportRange(1, 5, tinyReport)...); err != nil {
			return err
		}
		if err := oldHistory(t, tx, "mixed", "plain", reportRange(6, 8, tinyReport)...); err != nil {
			return err
		}
		if err := oldHistory(t, tx, "ghost", "plain", reportRange(1, 3, tinyReport)...); err != nil {
			return err
		}
		if err := tx.Bucket(bLast).Put([]byte("lastonly"), mustEncode(t, tinyReport(7))); err != nil {
			return err
		}
		// A stale copy beside a history: the history wins.
		if err := tx.Bucket(bLast).Put([]byte("plain"), mustEncode(t, tinyReport(3))); err != nil {
			return err
		}
		return tx.Bucket(bHistSize).Put([]byte("plain"), make([]byte, 16))
	})
}

func checkMigrated(t *testing.T, s *Bolt) {
	t.Helper()
	wantRun(t, "plain", seqsOf(t, s, "plain"), 21, MaxStatusHistory+20)
	wantRun(t, "buckets", seqsOf(t, s, "buckets"), 1, 10)
	wantRun(t, "mixed", seqsOf(t, s, "mixed"), 1, 8)
	wantRun(t, "lastonly", seqsOf(t, s, "lastonly"), 7, 7)
	if h, _ := s.StatusHistory(context.Background(), "buckets"); len(h) != 10 || h[9].Error != bigReport(10).Error {
		t.Fatal("the large report of an old bucket history did not come through whole")
	}
	recs, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"plain": MaxStatusHistory + 20, "buckets": 10, "mixed": 8, "lastonly": 7}
	for _, r := range recs {
		if r.LastStatus == nil || r.LastStatus.Seq != want[r.ID] {
			t.Fatalf("%s: last status %+v, want seq %d", r.ID, r.LastStatus, want[r.ID])
		}
	}
	s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bStatus, bLast, bHistSize} {
			if tx.Bucket(b) != nil {
				t.Errorf("imds.db still has bucket %s after the migration", b)
			}
		}
		return nil
	})
	s.reportsTx(false, func(tx *bolt.Tx) error {
		if tx.Bucket(rMeta).Get(kMigrated) == nil {
			t.Error("reports.db is not marked migrated")
		}
		return tx.Bucket(rLog).ForEach(func(_, v []byte) error {
			if id, _, _ := splitLogValue(v); string(id) == "ghost" {
				t.Error("the unregistered id's history was copied")
			}
			return nil
		})
	})
}

// A store written before reports.db has its histories moved there at
// open, every form of them; a second open changes nothing.
func TestBoltMigratesOldLayout(t *testing.T) {
	dir := t.TempDir()
	oldLayoutFixture(t, dir)
	s := open(t, dir)
	checkMigrated(t, s)
	s.Close()
	s = open(t, dir)
	checkMigrated(t, s)
}

// The migration's transactions are bounded by bytes too, not only by
// reports: 20,000 reports of up to 64 KiB would be one transaction of
// over a gigabyte in memory. With a bound of a byte, every report is a
// transaction of its own, and the migration is the same.
func TestBoltMigrationBoundedByBytes(t *testing.T) {
	defer func(n int) { migrateBatchBytes = n }(migrateBatchBytes)
	migrateBatchBytes = 1
	dir := t.TempDir()
	oldLayoutFixture(t, dir)
	s := open(t, dir)
	checkMigrated(t, s)
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, ReportsFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// One transaction a report, and the open's own (buckets, mark).
	var txs int
	db.View(func(tx *bolt.Tx) error { txs = int(tx.ID()); return nil })
	if txs < MaxStatusHistory {
		t.Fatalf("the migration took %d transactions, want one a report", txs)
	}
}

// The migration's steps are safe to repeat after a crash: a copy left
// unfinished (records but no mark) is made again without duplicates; a
// copy marked done is never made again, and imds.db's leftover old
// histories are then only dropped.
func TestBoltMigrationRepeats(t *testing.T) {
	t.Run("unfinished copy", func(t *testing.T) {
		dir := t.TempDir()
		oldLayoutFixture(t, dir)
		// A crash during the copy: some records, no mark.
		db, err := bolt.Open(filepath.Join(dir, ReportsFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			l, err := tx.CreateBucketIfNotExists(rLog)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(rMeta); err != nil {
				return err
			}
			for i := uint64(1); i <= 50; i++ {
				if err := l.Put(binary.BigEndian.AppendUint64(nil, i), logValue("plain", mustEncode(t, tinyReport(i)))); err != nil {
					return err
				}
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s := open(t, dir)
		checkMigrated(t, s)
	})
	t.Run("crash before imds.db dropped its histories", func(t *testing.T) {
		dir := t.TempDir()
		oldLayoutFixture(t, dir)
		s := open(t, dir)
		s.Close()
		// The histories back in imds.db, different: a copy would show.
		db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket(bStatus); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bLast); err != nil {
				return err
			}
			return oldHistory(t, tx, "plain", "plain", tinyReport(9999))
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s = open(t, dir)
		checkMigrated(t, s)
	})
}

// A reports.db that is missing (lost, or moved aside by recover) is made
// new, empty: the store opens with every instance and no history, and
// the cuts of imds.db, which covered the old file's records, go.
func TestBoltReportsFileMissing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a", "b")
	if err := s.AppendStatus(ctx, "a", tinyReport(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, ReportsFileName)); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	wantRun(t, "a", seqsOf(t, s, "a"), 1, 0)
	if err := s.AppendStatus(ctx, "a", tinyReport(2)); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "a", seqsOf(t, s, "a"), 2, 2)
	s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bCuts).Stats().KeyN; n != 0 {
			t.Errorf("%d cuts kept with a new reports.db", n)
		}
		return nil
	})
}

// A damaged reports.db is refused by OpenBolt and CheckBolt with a
// *DamagedError naming it; RecoverBolt moves it aside and keeps imds.db
// as it is; the store then opens with every instance and no history.
func TestBoltDamagedReportsFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a", "b")
	for i := uint64(1); i <= 200; i++ {
		if err := s.AppendStatus(ctx, "a", bigReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	epoch := s.Epoch()
	s.Close()
	rpath := filepath.Join(dir, ReportsFileName)
	cutLastPages(t, rpath)
	var de *DamagedError
	if _, err := OpenBolt(dir); !errors.As(err, &de) || de.Path != rpath {
		t.Fatalf("OpenBolt with a truncated reports.db: %v, want a *DamagedError naming %s", err, rpath)
	}
	if _, err := CheckBolt(dir); !errors.As(err, &de) || de.Path != rpath || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("CheckBolt with a truncated reports.db: %v", err)
	}
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rebuilt || res.Epoch != epoch || res.Instances != 2 || !strings.HasPrefix(res.ReportsDamagedPath, rpath+".damaged-") {
		t.Fatalf("recover of a damaged reports.db: %+v", res)
	}
	if _, err := os.Stat(res.ReportsDamagedPath); err != nil {
		t.Fatal(err)
	}
	sum, err := CheckBolt(dir)
	if err != nil || sum.ReportsPath != "" {
		t.Fatalf("check after recover: %+v, %v (reports.db is made at the next open)", sum, err)
	}
	s = open(t, dir)
	if s.Epoch() != epoch {
		t.Fatalf("epoch %s after recovering reports.db only, want %s kept", s.Epoch(), epoch)
	}
	wantRun(t, "a after recover", seqsOf(t, s, "a"), 1, 0)
	if err := s.AppendStatus(ctx, "a", tinyReport(201)); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "a's next report", seqsOf(t, s, "a"), 201, 201)
	s.Close()
	if sum, err := CheckBolt(dir); err != nil || sum.ReportsPath != rpath || sum.ReportsBytes == 0 {
		t.Fatalf("check after the next open: %+v, %v", sum, err)
	}
}

// A sweep pass that ran in the very batch of a report that raced a
// Delete does not cover that report (a batch never judges its own seqs):
// the delete's cut must outlive it. Before the fix the cut went with that
// pass (the pass had not been recorded as running when the Delete ended),
// so after a restart the re-registered id showed the raced report of its
// deleted incarnation.
func TestBoltCutOutlivesASweepOfTheRacedBatch(t *testing.T) {
	ctx := context.Background()
	f := newCommitFixture(t, 0)
	s := f.s
	dir := filepath.Dir(s.path)
	registerIDs(t, s, "a")
	entered, unblock := holdNextBatch(s)
	// The next batch sweeps (a pass starts and ends in it).
	forceSweep(s)
	raced := f.appendAsync("a", tinyReport(7))
	<-entered
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	close(unblock)
	if err := <-raced; err != nil {
		t.Fatalf("the report that raced the delete: %v", err)
	}
	registerIDs(t, s, "a")
	s.Close()
	s = open(t, dir)
	wantRun(t, "re-registered a after a restart", seqsOf(t, s, "a"), 1, 0)
}

// Seqs are handed out before their transaction commits, so a crash can
// leave imds.db with a delete's cut above reports.db's persisted next
// seq. The open must go on above every cut: a re-registered id's new
// reports would otherwise get seqs under its old cut and be dead (lost)
// at the next open.
func TestBoltSeqsGoOnAboveEveryCut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	registerIDs(t, s, "a")
	if err := s.AppendStatus(ctx, "a", tinyReport(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// As a crash leaves it: seqs up to 50 were handed out (a's cut says
	// so) but never committed in reports.db.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bCuts).Put([]byte("a"), binary.BigEndian.AppendUint64(nil, 50))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = open(t, dir)
	registerIDs(t, s, "a")
	if err := s.AppendStatus(ctx, "a", tinyReport(2)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	wantRun(t, "a's new report after a restart", seqsOf(t, s, "a"), 2, 2)
}

// A reopen of reports.db that fails (after a sweep or RemapBytes of
// appends) must not leave the store silently without its reports file:
// reports fail with an error naming reports.db, Probe says so too (not
// only for its cache's few seconds), and the next report batch tries the
// reopen again, so reports are taken once the file opens.
func TestBoltReportsReopenFailure(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	registerIDs(t, s, "a")
	defer func(n int) { remapBytes = n }(remapBytes)
	remapBytes = 1
	var fail atomic.Bool
	defer func(o func(string) (*bolt.DB, error)) { openReportsFile = o }(openReportsFile)
	orig := openReportsFile
	openReportsFile = func(path string) (*bolt.DB, error) {
		if fail.Load() {
			return nil, errors.New("injected open failure")
		}
		return orig(path)
	}
	fail.Store(true)
	// This report commits; the reopen after it fails.
	if err := s.AppendStatus(ctx, "a", tinyReport(1)); err != nil {
		t.Fatal(err)
	}
	err := s.AppendStatus(ctx, "a", tinyReport(2))
	if err == nil || !strings.Contains(err.Error(), ReportsFileName) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("a report while reports.db cannot be opened: %v, want an error naming %s and why", err, ReportsFileName)
	}
	s.probe.mu.Lock()
	s.probe.at = time.Time{} // the cache expired
	s.probe.mu.Unlock()
	if err := s.Probe(ctx); err == nil || !strings.Contains(err.Error(), ReportsFileName) {
		t.Fatalf("Probe while reports.db is not open: %v, want an error naming %s", err, ReportsFileName)
	}
	if _, err := s.StatusHistory(ctx, "a"); err == nil || !strings.Contains(err.Error(), ReportsFileName) {
		t.Fatalf("history while reports.db is not open: %v, want an error naming %s", err, ReportsFileName)
	}
	fail.Store(false)
	if err := s.AppendStatus(ctx, "a", tinyReport(3)); err != nil {
		t.Fatalf("a report once reports.db opens again: %v", err)
	}
	s.probe.mu.Lock()
	s.probe.at = time.Time{}
	s.probe.mu.Unlock()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("Probe once reports.db is open again: %v", err)
	}
	got := seqsOf(t, s, "a")
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("history %v, want [1 3]", got)
	}
}

// reports.db's reopen (after every batch here) against concurrent
// StatusHistory, Load, Feed, publishes, deletes and a Close in the middle:
// reads see whole histories, nothing fails but with ErrClosed once the
// store closes, and the race detector finds nothing (go test -race).
func TestBoltReopenUnderLoad(t *testing.T) {
	defer func(n int) { remapBytes = n }(remapBytes)
	remapBytes = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := open(t, t.TempDir())
	ids := []string{"a", "b", "c"}
	registerIDs(t, s, ids...)
	go s.Feed(ctx, func(Event) {})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	ok := func(what string, err error) bool {
		if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNotFound) {
			select {
			case errs <- fmt.Errorf("%s: %w", what, err):
			default:
			}
		}
		return err == nil || !errors.Is(err, ErrClosed)
	}
	for i, id := range ids {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for n := uint64(1); n <= 2000; n++ {
				if !ok("append", s.AppendStatus(ctx, id, tinyReport(n))) {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 2000 {
				h, err := s.StatusHistory(ctx, id)
				if !ok("history", err) {
					return
				}
				for j := 1; j < len(h); j++ {
					if h[j].Seq <= h[j-1].Seq {
						ok("history", fmt.Errorf("%s out of order: %d after %d", id, h[j].Seq, h[j-1].Seq))
					}
				}
				if i == 0 {
					_, err := s.Load(ctx)
					if !ok("load", err) {
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			if _, err := s.Apply(ctx, "a", Change{Publish: stamp(`"hostname":"a"`)}); !ok("publish", err) {
				return
			}
		}
	}()
	// Close once reports are flowing and reopens happen.
	for i := 0; i < 10000 && s.rq.commits.Load() < 50; i++ {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close during reopens: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// With both files damaged, recover rebuilds imds.db and moves reports.db
// aside, and its result says both: what imds.db lost and that every
// status history is lost (before the fix the salvage's list replaced the
// line about reports.db).
func TestBoltRecoverBothDamaged(t *testing.T) {
	ctx := context.Background()
	dir, _ := filled(t, 40)
	s := open(t, dir)
	for i := uint64(1); i <= 100; i++ {
		if err := s.AppendStatus(ctx, "vm-001", bigReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	cutLastPages(t, filepath.Join(dir, FileName))
	cutLastPages(t, filepath.Join(dir, ReportsFileName))
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rebuilt || res.ReportsDamagedPath == "" {
		t.Fatalf("recover of two damaged files: %+v, want imds.db rebuilt and reports.db moved aside", res)
	}
	said := false
	for _, l := range res.Lost {
		said = said || strings.Contains(l, "every status history") && strings.Contains(l, ReportsFileName)
	}
	if !said {
		t.Fatalf("recover's Lost %q does not say the status histories of %s are lost", res.Lost, ReportsFileName)
	}
	if _, err := CheckBolt(dir); err != nil {
		t.Fatalf("check after recover: %v", err)
	}
}

// A sweep judges tens of thousands of records (~10 ms): it must not hold
// the index's lock all along, which a publish (its record's last status),
// a registration and a Delete take. With the sweep held between two
// stretches of records, a publish and a Delete complete. Before the fix
// the sweep held the lock across its whole walk and they waited for it.
func TestBoltSweepLetsPublishesThrough(t *testing.T) {
	ctx := context.Background()
	f := newCommitFixture(t, 0)
	s := f.s
	registerIDs(t, s, "a", "b", "c", "d")
	// Live records enough for two stretches of the walk.
	for i := uint64(1); i <= MaxStatusHistory; i++ {
		for _, id := range []string{"a", "d", "c"} {
			if err := s.AppendStatus(ctx, id, tinyReport(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The next batch sweeps from the first record.
	s.idx.mu.Lock()
	s.idx.force, s.idx.sweepFrom = true, 0
	s.idx.mu.Unlock()
	entered, unblock := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.rq.sweepHook = func() {
		once.Do(func() {
			close(entered)
			<-unblock
		})
	}
	defer func() {
		select {
		case <-unblock:
		default:
			close(unblock)
		}
	}()
	held := f.appendAsync("b", tinyReport(1))
	<-entered
	done := make(chan error, 1)
	go func() {
		if _, err := s.Apply(ctx, "c", Change{Publish: stamp(`"hostname":"c"`)}); err != nil {
			done <- err
			return
		}
		done <- s.Delete(ctx, "c")
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a hang, not a timing bound
		t.Fatal("a publish and a delete waited for a sweep held in its walk")
	}
	close(unblock)
	if err := <-held; err != nil {
		t.Fatalf("the report of the sweeping batch: %v", err)
	}
}

// zeroPagesHolding overwrites with zeros every page of the bbolt file at
// path (meta pages aside) that holds needle: whatever was on them,
// freed older versions included, is lost for the walk and the page scan.
func zeroPagesHolding(t *testing.T, path, needle string) int {
	t.Helper()
	m := newestMetaOf(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int(m.pageSize)
	n := 0
	for p := 2; (p+1)*ps <= len(b); p++ {
		page := b[p*ps : (p+1)*ps]
		if strings.Contains(string(page), needle) {
			clear(page)
			n++
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// An instance whose registration the salvage of a damaged imds.db lost
// keeps its reports in a healthy reports.db; registered again under the
// same id, it must not show them (they are of an incarnation imds.db no
// longer knows). In one run the open's sweep pass deletes them before
// anything is shown (their id is not registered at open), but a process
// that stops before that pass reached them (a crash, a sweep that cannot
// commit) leaves them in reports.db beside the re-registration, and the
// next open took them as the new incarnation's history. Before the fix
// the rebuilt imds.db had no cut for the lost id and the re-registered id
// showed its lost incarnation's reports after a restart.
func TestBoltRecoverCutsLostInstances(t *testing.T) {
	ctx := context.Background()
	dir, _ := filled(t, 40) // vm-000..vm-039, one report each
	s := open(t, dir)
	for i := uint64(2); i <= 5; i++ {
		if err := s.AppendStatus(ctx, "vm-007", tinyReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	// vm-039 deleted: its report stays in reports.db, dead by its cut,
	// until a sweep.
	if err := s.Delete(ctx, "vm-039"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A forced rebuild of a healthy store keeps every history: no cut for
	// an instance the salvage kept, nor a new one (or a word) for a
	// deleted one.
	if res, err := RecoverBolt(dir, true); err != nil || !res.Rebuilt || res.Instances != 39 || len(res.Cut) != 0 || len(res.Lost) != 0 {
		t.Fatalf("forced recover of a healthy store: %+v, %v", res, err)
	}
	s = open(t, dir)
	wantRun(t, "vm-007 after a forced recover", seqsOf(t, s, "vm-007"), 1, 5)
	wantRun(t, "vm-008 after a forced recover", seqsOf(t, s, "vm-008"), 1, 1)
	s.Close()

	if n := zeroPagesHolding(t, filepath.Join(dir, FileName), `vm-007`); n == 0 {
		t.Fatal("no page of imds.db holds vm-007")
	}
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rebuilt || res.ReportsDamagedPath != "" {
		t.Fatalf("recover: %+v, want imds.db rebuilt and reports.db kept", res)
	}
	// The result names vm-007, of which reports.db alone held a trace.
	if !strings.Contains(strings.Join(res.Lost, "\n"), `"vm-007"`) || !slices.Contains(res.Cut, "vm-007") {
		t.Errorf("recover's Lost %q or Cut %q does not name vm-007, whose reports reports.db holds", res.Lost, res.Cut)
	}
	// vm-007 registered again, then the process stopped before the open's
	// sweep pass: as a committed Apply leaves imds.db.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bInstances).Get([]byte("vm-007")) != nil {
			return errors.New("vm-007 was salvaged; the test wants it lost")
		}
		return register(tx, "vm-007", nil, &Registration{Addresses: []string{"10.9.0.7"}})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	wantRun(t, "vm-007 registered again after the recover", seqsOf(t, s, "vm-007"), 1, 0)
	recs, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, r := range recs {
		kept[r.ID] = true
		if r.ID == "vm-007" && r.LastStatus != nil {
			t.Fatalf("vm-007 registered again: last status %+v of its lost incarnation", r.LastStatus)
		}
	}
	// Every other lost id, registered again in this run: no history.
	var lost []string
	for i := range 39 {
		if id := fmt.Sprintf("vm-%03d", i); !kept[id] {
			lost = append(lost, id)
		}
	}
	t.Logf("lost in the salvage: %v", lost)
	for i, id := range lost {
		if _, err := s.Apply(ctx, id, Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.9.1.%d", i+1)}}}); err != nil {
			t.Fatal(err)
		}
		wantRun(t, id+" registered again", seqsOf(t, s, id), 1, 0)
	}
	// New reports are the new incarnation's, kept over a restart.
	if err := s.AppendStatus(ctx, "vm-007", tinyReport(100)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if h := seqsOf(t, s, "vm-007"); len(h) != 1 || h[0] != 100 {
		t.Fatalf("vm-007 after a restart: reports %v, want only its new one (100)", h)
	}
}

// A Delete whose imds.db commit fails changes nothing: its error is
// returned, the instance, its history and its last status stay, and a
// report that raced it (taken by the report committer before the Delete,
// committed while the Delete's transaction ran) is kept and delivered, in
// a batch whose sweep pass judged the instance's records meanwhile. The
// state is the one a restart shows. Before the fix the Delete took the id
// out of the index before its commit: the raced report was dropped as of
// a deleted instance (hidden until a restart), and the sweep deleted the
// history's records from reports.db for good.
func TestBoltFailedDeleteChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := newCommitFixture(t, 0)
	s := f.s
	dir := filepath.Dir(s.path)
	registerIDs(t, s, "a")
	for i := uint64(1); i <= 5; i++ {
		if err := s.AppendStatus(ctx, "a", tinyReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A report of a, held after it got its seq, in a batch that sweeps.
	entered, unblock := holdNextBatch(s)
	forceSweep(s)
	raced := f.appendAsync("a", tinyReport(6))
	<-entered
	var racedErr error
	fault := func() error {
		// Inside the Delete's transaction, its change made: the raced
		// report commits and is delivered, then the commit fails.
		close(unblock)
		racedErr = <-raced
		return errors.New("injected commit failure")
	}
	s.commitFault.Store(&fault)
	err := s.Delete(ctx, "a")
	s.commitFault.Store(nil)
	if err == nil || !strings.Contains(err.Error(), "injected commit failure") {
		t.Fatalf("Delete with a failing commit: %v, want its error", err)
	}
	if racedErr != nil {
		t.Fatalf("the report that raced the failed delete: %v", racedErr)
	}
	wantRun(t, "a after the failed delete", seqsOf(t, s, "a"), 1, 6)
	recs, err := s.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].ID != "a" || recs[0].LastStatus == nil || recs[0].LastStatus.Seq != 6 {
		t.Fatalf("Load after the failed delete: %+v, %v; want a with last status 6", recs, err)
	}
	sawRaced := false
	for len(f.events) > 0 {
		ev := <-f.events
		if ev.Type == EventDeleted {
			t.Fatalf("the failed delete was delivered: %+v", ev)
		}
		sawRaced = sawRaced || ev.Type == EventStatus && ev.ID == "a" && ev.Status.Seq == 6
	}
	if !sawRaced {
		t.Fatal("the feed never delivered the report that raced the failed delete")
	}
	// It goes on as if no Delete was tried, and a restart shows the same.
	if err := s.AppendStatus(ctx, "a", tinyReport(7)); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "a's next report", seqsOf(t, s, "a"), 1, 7)
	s.Close()
	s = open(t, dir)
	wantRun(t, "a after a restart", seqsOf(t, s, "a"), 1, 7)
	// A Delete that commits still cuts every report.
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	registerIDs(t, s, "a")
	wantRun(t, "a registered again", seqsOf(t, s, "a"), 1, 0)
}
