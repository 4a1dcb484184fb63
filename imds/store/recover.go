package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// RecoverResult says what RecoverBolt did.
type RecoverResult struct {
	// Path is the new store; DamagedPath is where the damaged file was
	// moved (beside it).
	Path, DamagedPath string
	// Epoch is the new store's epoch: a new one, so that every agent
	// re-reads its document.
	Epoch string
	// Instances is how many instances were salvaged with their
	// registration.
	Instances int
	// Scanned are the salvaged instances found only by scanning pages
	// (the tree was unreadable there): an instance deleted before the
	// damage may be among them, for the operator to check.
	Scanned []string
	// Lost says, one line each, what could not be read.
	Lost []string
	// ReportsDamagedPath is where a damaged reports.db was moved ("" when
	// it was healthy or missing): the next open makes a new, empty one,
	// so every status history starts again.
	ReportsDamagedPath string
	// Rebuilt says imds.db was rebuilt (it was damaged, or force); when
	// only reports.db was damaged, imds.db and its epoch are kept.
	Rebuilt bool
	// Cut are the ids whose status reports the kept reports.db holds but
	// whose registration the rebuilt imds.db lost: their reports are dead
	// for good (a report cut each), so an id registered again starts a new
	// history.
	Cut []string
}

// salvaged is what could be read of one instance.
type salvaged struct {
	id     string
	reg    []byte
	config []byte
	// reports are its status reports, oldest first (the history, or the
	// last report alone).
	reports [][]byte
	// cfgErr and lastErr say why the walk could not read the document or
	// the status (a page scan may still find them).
	cfgErr, lastErr error
}

// RecoverBolt salvages what it can read of the damaged store in dir into
// a new store with a new epoch, which takes the file's place; the damaged
// file is kept beside it as imds.db.damaged-<time>. Instances keep their
// registration, document, generation counter (never lower than the
// document's) and status; the address and interface indexes are rebuilt.
// A damaged reports.db is moved aside as reports.db.damaged-<time> and
// the next open makes a new one: the status histories are lost (said in
// Lost), imds.db is left as it is unless it is damaged too. A rebuilt
// imds.db gets a report cut for each id the kept reports.db holds reports
// of but the salvage lost (Cut), so those reports stay dead. A store that
// checks healthy is left alone unless force is set (which rebuilds
// imds.db, not reports.db). It must not run while a prewarm-imds serves
// the store: a store a server holds (its flock) is refused, damaged or
// not.
func RecoverBolt(dir string, force bool) (RecoverResult, error) {
	path := filepath.Join(dir, FileName)
	res := RecoverResult{Path: path}
	unlock, err := lockForRecovery(path)
	if err != nil {
		return res, fmt.Errorf("recover store %s: %w", path, err)
	}
	defer unlock()
	sum, err := checkPath(path)
	rpath := filepath.Join(dir, ReportsFileName)
	_, rerr := checkPath(rpath)
	var de, rde *DamagedError
	switch {
	case rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && !errors.As(rerr, &rde):
		return res, fmt.Errorf("recover store %s: %w", rpath, rerr)
	case err == nil && rde == nil && !force:
		return res, fmt.Errorf("recover store %s: it is not damaged (%d instances, epoch %s; %s too); nothing to recover (force rebuilds it anyway, with a new epoch)", path, sum.Instances, sum.Epoch, ReportsFileName)
	case err != nil && !errors.As(err, &de):
		return res, fmt.Errorf("recover store %s: %w", path, err)
	}
	if rde != nil {
		res.ReportsDamagedPath = fmt.Sprintf("%s.damaged-%s", rpath, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(rpath, res.ReportsDamagedPath); err != nil {
			return res, fmt.Errorf("recover store %s: move the damaged file aside: %w", rpath, err)
		}
		syncDir(dir)
		res.Lost = append(res.Lost, fmt.Sprintf("every status history: %s was damaged (%s); it is kept as %s and a new, empty one is made at the next start", rpath, rde.Reason, res.ReportsDamagedPath))
		if de == nil && !force {
			res.Epoch, res.Instances = sum.Epoch, sum.Instances
			return res, nil
		}
	}
	res.Rebuilt = true

	// The ids reports.db holds records of, read before anything changes
	// (a kept reports.db checked healthy; a moved or missing one holds
	// nothing, and the next open drops every cut of a new one).
	var logged map[string]uint64
	if rde == nil && rerr == nil {
		if logged, err = reportIDs(rpath); err != nil {
			return res, fmt.Errorf("recover store %s: read the ids of %s: %w", path, rpath, err)
		}
	}
	insts, gens, cuts, scannedIDs, lost := salvage(path)
	res.Lost, res.Scanned = append(res.Lost, lost...), scannedIDs
	found := map[string]bool{}
	for _, in := range insts {
		found[in.id] = true
	}

	tmp := filepath.Join(dir, "."+FileName+".recovered")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("recover store %s: %w", path, err)
	}
	ndb, epoch, err := openMain(tmp)
	if err != nil {
		return res, fmt.Errorf("recover store %s: %w", path, err)
	}
	res.Epoch = epoch
	// One sync at the end instead of one per transaction.
	ndb.NoSync = true
	restored := 0
	err = ndb.Update(func(tx *bolt.Tx) error {
		g := tx.Bucket(bGens)
		for id, n := range gens {
			if err := g.Put([]byte(id), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return err
			}
		}
		c := tx.Bucket(bCuts)
		for id, n := range cuts {
			if err := c.Put([]byte(id), binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		kept := map[string]bool{}
		for _, in := range insts {
			if err := restoreInstance(tx, in); err != nil {
				res.Lost = append(res.Lost, fmt.Sprintf("instance %q: %v", in.id, err))
				continue
			}
			restored++
			kept[in.id] = true
			bad, err := restoreReports(tx, in)
			if err != nil {
				return err
			}
			if bad > 0 {
				res.Lost = append(res.Lost, fmt.Sprintf("%d status reports of %q: unreadable", bad, in.id))
			}
		}
		// The ids the salvage lost whose reports reports.db still holds:
		// a cut above each one's newest record, as a Delete writes. Their
		// records are then dead by the open's one rule (live iff the id is
		// registered and the seq above its cut), at every open until a
		// sweep pass has deleted them and dropped the cut, so an id
		// registered again never shows the lost incarnation's reports,
		// even if the process stops before that sweep. This is the
		// simplest correct design: a cut is the store's existing, durable
		// way of saying "these records of id are dead", already kept by
		// recovery, handed out seqs above at open and removed by the
		// sweep; a rule treating unknown ids as dead would need a marker
		// of its own in imds.db that a re-registration has to tell apart.
		res.Cut = nil
		for id, seq := range logged {
			if kept[id] || seq <= cuts[id] {
				continue // salvaged, or deleted: its cut covers them
			}
			res.Cut = append(res.Cut, id)
			if !found[id] {
				res.Lost = append(res.Lost, fmt.Sprintf("instance %q: nothing of it is left in %s, only its status reports in %s (dead now): register it again if it is meant to exist", id, FileName, ReportsFileName))
			}
			if err := c.Put([]byte(id), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		sort.Strings(res.Cut)
		return nil
	})
	res.Instances = restored
	if err == nil {
		err = ndb.Sync()
	}
	if cerr := ndb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("recover store %s: write the new store: %w", path, err)
	}
	if err := copyOwner(tmp, path); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("recover store %s: give the new store the damaged one's owner: %w", path, err)
	}
	res.DamagedPath = fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, res.DamagedPath); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("recover store %s: keep the damaged file: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("recover store %s: put the new store in place (it is %s): %w", path, tmp, err)
	}
	syncDir(dir)
	return res, nil
}

// reportIDs reads the reports file at path (checked healthy, not open
// for writing) and returns each id it holds records of with its newest
// seq.
func reportIDs(path string) (map[string]uint64, error) {
	db, err := openProtected(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ids := map[string]uint64{}
	err = db.View(func(tx *bolt.Tx) error {
		return protect(path, func() error {
			l := tx.Bucket(rLog)
			if l == nil {
				return nil // made by an open that stopped early: no record
			}
			c := l.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					continue
				}
				if id, _, ok := logRecord(l, k, v); ok {
					ids[string(id)] = max(ids[string(id)], binary.BigEndian.Uint64(k))
				}
			}
			return nil
		})
	})
	return ids, err
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// restoreInstance writes one salvaged instance into tx, rebuilding its
// ownership indexes.
func restoreInstance(tx *bolt.Tx, in salvaged) error {
	var reg Registration
	if err := json.Unmarshal(in.reg, &reg); err != nil {
		return fmt.Errorf("decode registration: %w", err)
	}
	if err := register(tx, in.id, nil, &reg); err != nil {
		return err
	}
	key := []byte(in.id)
	if in.config != nil {
		if err := tx.Bucket(bConfigs).Put(key, in.config); err != nil {
			return err
		}
	}
	return nil
}

// restoreReports writes the salvaged reports of in, oldest first, as a
// history of the layout before reports.db: the next open moves them into
// reports.db unless that file already holds the store's histories. It
// returns the reports it could not decode.
func restoreReports(tx *bolt.Tx, in salvaged) (bad int, err error) {
	if len(in.reports) == 0 {
		return 0, nil
	}
	st, err := tx.CreateBucketIfNotExists(bStatus)
	if err != nil {
		return 0, err
	}
	h, err := st.CreateBucketIfNotExists([]byte(in.id))
	if err != nil {
		return 0, err
	}
	for _, b := range in.reports {
		var r status.Report
		if json.Unmarshal(b, &r) != nil {
			bad++
			continue
		}
		data, err := EncodeReport(r)
		if err != nil {
			bad++
			continue
		}
		seq, err := h.NextSequence()
		if err != nil {
			return bad, err
		}
		if err := putReport(h, binary.BigEndian.AppendUint64(nil, seq), data, tx.DB().Info().PageSize); err != nil {
			return bad, err
		}
	}
	return bad, nil
}

// salvage reads what it can of the store file at path: the instances
// whose registration is readable, the generation counter of every id it
// can find (never lower than its document's), the ids found only by
// scanning pages, and what it lost. It reads a private copy, lengthened
// with zero pages to the size its meta page records, so that a truncated
// file cannot fault; every read is guarded (a damaged page is a lost
// instance, not a crash).
//
// It walks the tree first. Where a bucket cannot be listed (a truncated
// file usually loses the tree's newest pages, its root among them), it
// also scans every leaf page of the file for instances the walk missed:
// a registration found there in one version only, its newest document and
// report. Freed pages still hold old versions, so a scanned instance may
// be one deleted earlier: the caller reports them for the operator to
// check.
func salvage(path string) (insts []salvaged, gens map[string]int64, cuts map[string]uint64, scannedIDs, lost []string) {
	gens = map[string]int64{}
	cuts = map[string]uint64{}
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return nil, gens, cuts, nil, []string{fmt.Sprintf("%s is not a regular file: nothing could be read", path)}
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, gens, cuts, nil, []string{fmt.Sprintf("open %s: %v", path, err)}
	}
	defer src.Close()
	m, ok := newestMeta(src)
	if !ok {
		return nil, gens, cuts, nil, []string{"no valid meta page: nothing could be read"}
	}
	cp, err := os.CreateTemp(filepath.Dir(path), "."+FileName+".salvage-*")
	if err != nil {
		return nil, gens, cuts, nil, []string{fmt.Sprintf("copy %s: %v", path, err)}
	}
	defer os.Remove(cp.Name())
	size := int64(m.pages) * int64(m.pageSize)
	_, err = io.Copy(cp, src)
	if err == nil {
		if fi, _ := cp.Stat(); fi != nil && fi.Size() < size {
			err = cp.Truncate(size)
		}
	}
	if cerr := cp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, gens, cuts, nil, []string{fmt.Sprintf("copy %s: %v", path, err)}
	}
	raise := func(id string, n int64) {
		if n > gens[id] {
			gens[id] = n
		}
	}
	got := map[string]bool{}
	broken := true
	db, err := openForWalk(cp.Name(), m)
	if err != nil {
		lost = append(lost, fmt.Sprintf("the page tree cannot be walked (%v): only the page scan reads this file", err))
	} else {
		var walked []salvaged
		var walkLost []string
		walked, broken, walkLost = walkSalvage(db, raise, cuts)
		db.Close()
		lost = append(lost, walkLost...)
		for _, in := range walked {
			got[in.id] = true
		}
		insts = walked
	}
	sc := scanned{}
	if broken {
		sc = scanPages(cp.Name(), m)
	}
	for i := range insts {
		in := &insts[i]
		if in.config == nil && in.cfgErr != nil && sc.config[in.id] != nil {
			in.config, in.cfgErr = sc.config[in.id], nil
			raise(in.id, sc.cgen[in.id])
		}
		if len(in.reports) == 0 && in.lastErr != nil && sc.last[in.id] != nil {
			in.reports, in.lastErr = [][]byte{sc.last[in.id]}, nil
		}
		if in.cfgErr != nil {
			lost = append(lost, fmt.Sprintf("config of %q: %v; it is kept with nothing published", in.id, in.cfgErr))
		}
		if in.lastErr != nil {
			lost = append(lost, fmt.Sprintf("status of %q: %v", in.id, in.lastErr))
		}
	}
	for id, n := range sc.gens {
		raise(id, n)
	}
	ids := make([]string, 0, len(sc.regs))
	for id := range sc.regs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if got[id] {
			continue
		}
		if n := len(sc.regs[id]); n != 1 {
			lost = append(lost, fmt.Sprintf("instance %q: the page scan found %d differing registrations; register it again", id, n))
			continue
		}
		in := salvaged{id: id, config: sc.config[id]}
		if l := sc.last[id]; l != nil {
			in.reports = [][]byte{l}
		}
		for r := range sc.regs[id] {
			in.reg = []byte(r)
		}
		if in.config != nil {
			raise(id, sc.cgen[id])
		}
		insts = append(insts, in)
		scannedIDs = append(scannedIDs, id)
	}
	return insts, gens, cuts, scannedIDs, lost
}

// openForWalk opens the bbolt file at path read-only once checkLoops
// says bbolt cannot loop in its tree.
func openForWalk(path string, m boltMeta) (*bolt.DB, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	err = checkLoops(f, m)
	f.Close()
	if err != nil {
		return nil, err
	}
	return openProtected(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
}

// walkSalvage reads the instances through db's tree, each step guarded:
// a damaged page loses what is behind it, not the rest. broken says a
// bucket could not be listed whole.
func walkSalvage(db *bolt.DB, raise func(string, int64), cuts map[string]uint64) (insts []salvaged, broken bool, lost []string) {
	try := func(fn func(tx *bolt.Tx) error) error {
		return db.View(func(tx *bolt.Tx) error { return guard(func() error { return fn(tx) }) })
	}
	read := func(what string, fn func(tx *bolt.Tx) error) bool {
		if err := try(fn); err != nil {
			lost = append(lost, fmt.Sprintf("%s: %v", what, err))
			return false
		}
		return true
	}
	keys := func(bucket []byte) []string {
		var out []string
		ok := read("list "+string(bucket), func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			if b == nil && bytes.Equal(bucket, bLast) {
				return nil // a store of reports.db's layout has none
			}
			if b == nil {
				return errors.New("bucket missing")
			}
			return b.ForEach(func(k, _ []byte) error {
				out = append(out, string(k))
				return nil
			})
		})
		if !ok {
			broken = true
		}
		return out
	}
	for _, id := range keys(bGens) {
		read(fmt.Sprintf("generation of %q", id), func(tx *bolt.Tx) error {
			if v := tx.Bucket(bGens).Get([]byte(id)); len(v) == 8 {
				raise(id, int64(binary.BigEndian.Uint64(v)))
			}
			return nil
		})
	}
	// The report cuts (reports.go): kept, so that reports.db's records of
	// deleted incarnations stay dead.
	read("report cuts", func(tx *bolt.Tx) error {
		if b := tx.Bucket(bCuts); b != nil {
			return b.ForEach(func(k, v []byte) error {
				if len(v) == 8 {
					cuts[string(k)] = binary.BigEndian.Uint64(v)
				}
				return nil
			})
		}
		return nil
	})
	ids := map[string]bool{}
	for _, b := range [][]byte{bInstances, bConfigs, bLast} {
		for _, id := range keys(b) {
			ids[id] = true
		}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	for _, id := range sorted {
		in := salvaged{id: id}
		key := []byte(id)
		ok := read(fmt.Sprintf("instance %q", id), func(tx *bolt.Tx) error {
			in.reg = clone(tx.Bucket(bInstances).Get(key))
			if in.reg == nil {
				return errors.New("registration missing")
			}
			if err := json.Unmarshal(in.reg, new(Registration)); err != nil {
				return fmt.Errorf("registration unreadable: %w", err)
			}
			return nil
		})
		if !ok {
			continue
		}
		in.cfgErr = try(func(tx *bolt.Tx) error {
			c := clone(tx.Bucket(bConfigs).Get(key))
			if c == nil {
				return nil
			}
			var g struct {
				Generation int64 `json:"generation"`
			}
			if err := json.Unmarshal(c, &g); err != nil {
				return fmt.Errorf("unreadable: %w", err)
			}
			in.config = c
			raise(id, g.Generation)
			return nil
		})
		in.lastErr = try(func(tx *bolt.Tx) error {
			// Histories of a store written before reports.db.
			if st := tx.Bucket(bStatus); st != nil {
				if b := st.Bucket(key); b != nil {
					if err := collectReports(b, &in.reports); err != nil {
						return err
					}
				}
			}
			if lb := tx.Bucket(bLast); lb != nil {
				if l := lb.Get(key); l != nil && len(in.reports) == 0 {
					in.reports = [][]byte{clone(l)}
				}
			}
			return nil
		})
		insts = append(insts, in)
	}
	return insts, broken, lost
}

// collectReports appends every JSON object under b, nested buckets
// included, in key order: the reports of a status history, whichever of
// the store's history layouts wrote it.
func collectReports(b *bolt.Bucket, out *[][]byte) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return collectReports(nb, out)
			}
			return nil
		}
		if len(v) > 0 && v[0] == '{' {
			*out = append(*out, clone(v))
		}
		return nil
	})
}

// scanned is what a page scan found, by instance id.
type scanned struct {
	regs    map[string]map[string]bool // distinct registrations
	config  map[string][]byte          // the document of the highest generation
	cgen    map[string]int64
	last    map[string][]byte // the report of the highest seq
	lastSeq map[string]uint64
	gens    map[string]int64 // the highest counter
}

// scanPages reads every leaf page of the bbolt file at path with plain
// reads, bounds-checking each element, and sorts what it finds by the
// shape of its value: an 8-byte counter under an id (generations), a
// document whose instanceId is its key (configs), a registration, a
// report (laststatus).
func scanPages(path string, m boltMeta) scanned {
	sc := scanned{regs: map[string]map[string]bool{}, config: map[string][]byte{}, cgen: map[string]int64{},
		last: map[string][]byte{}, lastSeq: map[string]uint64{}, gens: map[string]int64{}}
	f, err := os.Open(path)
	if err != nil {
		return sc
	}
	defer f.Close()
	ps := int64(m.pageSize)
	le := binary.NativeEndian
	hdr := make([]byte, boltPageHeader)
	for i := int64(2); i < int64(m.pages); i++ {
		if _, err := f.ReadAt(hdr, i*ps); err != nil {
			return sc
		}
		id, flags, count, overflow := le.Uint64(hdr), le.Uint16(hdr[8:]), int64(le.Uint16(hdr[10:])), int64(le.Uint32(hdr[12:]))
		if int64(id) != i || flags != 0x02 || i+overflow >= int64(m.pages) {
			continue
		}
		page := make([]byte, (overflow+1)*ps)
		if _, err := f.ReadAt(page, i*ps); err != nil {
			continue
		}
		budget := int64(len(page)) / 16
		leafElems(page, count, 0, &budget, sc.add)
	}
	return sc
}

// leafElems calls fn with every key and value of the leaf page in page
// (count elements), descending into inline buckets (a bucket element
// whose root page is 0 carries its own leaf page after its 16-byte
// header), with every offset bounds-checked. budget bounds the elements
// read, nesting included (a real page holds at most one per 16 bytes;
// inline pages that overlap could otherwise multiply them).
func leafElems(page []byte, count int64, depth int, budget *int64, fn func(k string, v []byte)) {
	le := binary.NativeEndian
	for e := int64(0); e < count; e++ {
		if *budget--; *budget < 0 {
			return
		}
		off := boltPageHeader + e*16
		if off+16 > int64(len(page)) {
			return
		}
		ef, pos := le.Uint32(page[off:]), int64(le.Uint32(page[off+4:]))
		ks, vs := int64(le.Uint32(page[off+8:])), int64(le.Uint32(page[off+12:]))
		kb := off + pos
		if kb+ks+vs > int64(len(page)) || ks == 0 {
			continue
		}
		v := page[kb+ks : kb+ks+vs]
		if ef&0x01 == 0 {
			fn(string(page[kb:kb+ks]), v)
			continue
		}
		// An inline bucket: root page 0, then a leaf page header.
		if depth < 4 && len(v) >= 16+boltPageHeader && le.Uint64(v) == 0 && le.Uint16(v[16+8:]) == 0x02 {
			inline := v[16:]
			leafElems(inline, int64(le.Uint16(inline[10:])), depth+1, budget, fn)
		}
	}
}

func (sc *scanned) add(k string, v []byte) {
	if !api.ValidInstanceID(k) || k == "r" { // "r": a report inside a history, whose id is not known here
		return
	}
	if len(v) == 8 && v[0] == 0 {
		if n := int64(binary.BigEndian.Uint64(v)); n > sc.gens[k] {
			sc.gens[k] = n
		}
		return
	}
	var obj map[string]json.RawMessage
	if len(v) == 0 || v[0] != '{' || json.Unmarshal(v, &obj) != nil {
		return
	}
	var doc struct {
		InstanceID string `json:"instanceId"`
		Generation int64  `json:"generation"`
		Seq        uint64 `json:"seq"`
	}
	if json.Unmarshal(v, &doc) != nil {
		return
	}
	_, hasState := obj["state"]
	switch {
	case doc.InstanceID == k && doc.Generation > 0:
		if doc.Generation > sc.cgen[k] {
			sc.config[k], sc.cgen[k] = clone(v), doc.Generation
		}
	case hasState && obj["seq"] != nil:
		if _, ok := sc.last[k]; !ok || doc.Seq > sc.lastSeq[k] {
			sc.last[k], sc.lastSeq[k] = clone(v), doc.Seq
		}
	default:
		for f := range obj {
			if f != "addresses" && f != "hostInterface" && f != "labels" {
				return
			}
		}
		if json.Unmarshal(v, new(Registration)) != nil || len(obj) == 0 {
			return
		}
		if sc.regs[k] == nil {
			sc.regs[k] = map[string]bool{}
		}
		sc.regs[k][string(v)] = true
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
