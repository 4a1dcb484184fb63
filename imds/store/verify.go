package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A store file is verified before it is used, because bbolt trusts it: an
// empty file is silently initialised as a new store (every generation
// restarts at 1 and agents wait forever on their old ETag), and bbolt maps
// the file into memory, so a truncated one faults (SIGBUS) when a page past
// its end is read; a page tree that loops sends its cursor round forever.
// The checks run in this order, none of them writing:
//
//  1. with plain reads (no mapping): the file's size against the page
//     count its newest valid meta page records, then the page tree from
//     the root down (checkTree: each page in the file, the page it says it
//     is, reached once, its elements inside it, bounded depth);
//  2. a read-only open, then a walk of every bucket and value in a
//     goroutine where a memory fault is a panic (debug.SetPanicOnFault),
//     recovered as an error;
//  3. bbolt's own consistency check (tx.Check), reporting the first few
//     problems.
//
// Together they read each page of the tree a few times: tens of
// milliseconds for thousands of instances.

// DamagedError says the store file cannot be used as it is. Its message
// names the file, says why, and tells the operator what to do; the file
// is left untouched.
type DamagedError struct {
	Path   string
	Reason string
}

func (e *DamagedError) Error() string {
	dir := filepath.Dir(e.Path)
	return fmt.Sprintf("store %s is damaged: %s; it was left as it is: restore it from a backup, "+
		"or run \"prewarm-imds store check --data-dir %s\" and \"prewarm-imds store recover --data-dir %s\" "+
		"(which salvages what it can read into a new store and keeps the damaged file beside it)",
		e.Path, e.Reason, dir, dir)
}

// Layout of a bbolt meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags, root bucket (root
// page, sequence), freelist page, page count (high water mark), txid, and
// an FNV-64a checksum of the fields before it, in the machine's byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
)

// boltMeta is what verification needs from a meta page.
type boltMeta struct {
	pageSize uint32
	pages    uint64
	txid     uint64
	root     uint64 // the root bucket's page
	freelist uint64 // the freelist's page (noFreelist: none)
}

// noFreelist is the freelist page of a store that does not sync it.
const noFreelist = ^uint64(0)

// readMeta reads the meta page at off; ok is false unless it is valid.
func readMeta(f *os.File, off int64) (m boltMeta, ok bool) {
	b := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(b, off); err != nil {
		return m, false
	}
	b = b[boltPageHeader:]
	le := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:56])
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion || h.Sum64() != le.Uint64(b[56:]) {
		return m, false
	}
	m = boltMeta{pageSize: le.Uint32(b[8:]), pages: le.Uint64(b[40:]), txid: le.Uint64(b[48:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:])}
	if m.pageSize < 1024 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 || m.pages < 2 {
		return m, false
	}
	return m, true
}

// newestMeta returns the valid meta page with the highest txid, the one
// bbolt would use.
func newestMeta(f *os.File) (boltMeta, bool) {
	m0, ok0 := readMeta(f, 0)
	sizes := []uint32{m0.pageSize}
	if !ok0 {
		sizes = []uint32{uint32(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	}
	best, ok := m0, ok0
	for _, ps := range sizes {
		if m1, ok1 := readMeta(f, int64(ps)); ok1 && (!ok || m1.txid > best.txid) {
			best, ok = m1, true
		}
	}
	return best, ok
}

// checkFile checks the size of the store file at path against its meta
// pages without mapping it. It returns an error matching fs.ErrNotExist
// when there is no file, a *DamagedError when it is empty, truncated or
// not a bbolt file.
func checkFile(path string) (boltMeta, error) {
	// Stat first: opening a FIFO to read waits for a writer forever.
	if fi, err := os.Stat(path); err != nil {
		return boltMeta{}, fmt.Errorf("check store %s: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return boltMeta{}, &DamagedError{Path: path, Reason: fmt.Sprintf("not a regular file (mode %v)", fi.Mode())}
	}
	f, err := os.Open(path)
	if err != nil {
		return boltMeta{}, fmt.Errorf("check store %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return boltMeta{}, fmt.Errorf("check store %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return boltMeta{}, &DamagedError{Path: path, Reason: "the file is 0 bytes (an empty file is not an empty store: its instances and generations are gone)"}
	}
	m, ok := newestMeta(f)
	if !ok {
		return m, &DamagedError{Path: path, Reason: fmt.Sprintf("not a prewarm-imds store: the file (%d bytes) has no valid bbolt meta page (magic, version and checksum)", size)}
	}
	if want := int64(m.pages) * int64(m.pageSize); m.pages > uint64(size) || size < want {
		return m, &DamagedError{Path: path, Reason: fmt.Sprintf("truncated: the file is %d bytes, its meta page records %d pages of %d bytes (%d bytes)", size, m.pages, m.pageSize, want)}
	}
	if err := checkTree(f, m); err != nil {
		return m, &DamagedError{Path: path, Reason: "inconsistent: " + err.Error()}
	}
	return m, nil
}

// maxTreeDepth bounds the depth of the page tree, nested buckets
// included; a store's is a few levels.
const maxTreeDepth = 64

// checkTree reads the page tree from the root bucket down with plain
// reads, before bbolt maps the file: every page must be in the file, be
// the page it says it is, of a branch or leaf type, with its elements
// inside it, and be reached once. bbolt trusts all of that: a page that
// points back up the tree sends its cursor round forever, growing its
// stack until memory runs out, and a bad type or offset panics or faults.
func checkTree(f *os.File, m boltMeta) error {
	return newTreeCheck(f, m, false).run(m)
}

// checkLoops is checkTree for a file known to be damaged (RecoverBolt):
// a malformed page is a dead end (bbolt panics there, which a guarded
// read recovers from), and only what would make bbolt loop fails: a page
// reached twice, or a tree deeper than maxTreeDepth.
func checkLoops(f *os.File, m boltMeta) error {
	return newTreeCheck(f, m, true).run(m)
}

func newTreeCheck(f *os.File, m boltMeta, tolerant bool) *treeCheck {
	return &treeCheck{f: f, ps: int64(m.pageSize), pages: m.pages, seen: map[uint64]bool{}, tolerant: tolerant,
		elems: int64(m.pages) * int64(m.pageSize) / 16}
}

// errLoop marks the errors of a tree bbolt would loop in.
var errLoop = errors.New("the page tree has a loop")

func (c *treeCheck) run(m boltMeta) error {
	if m.freelist != noFreelist && !c.tolerant {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	return c.page(m.root, 0)
}

type treeCheck struct {
	f        *os.File
	ps       int64
	pages    uint64
	seen     map[uint64]bool
	tolerant bool // malformed pages are dead ends (checkLoops)
	// elems is how many more elements the check may read: each takes 16
	// bytes of the file, so a real tree has fewer. Inline buckets whose
	// pages overlap could otherwise make the count explode.
	elems int64
}

// read reads page id whole (with its overflow pages), checking its
// header, and marks it reached.
func (c *treeCheck) read(id uint64) (buf []byte, flags uint16, count int64, err error) {
	le := binary.NativeEndian
	if id < 2 || id >= c.pages {
		return nil, 0, 0, fmt.Errorf("page %d is outside the file's %d pages", id, c.pages)
	}
	hdr := make([]byte, boltPageHeader)
	if _, err := c.f.ReadAt(hdr, int64(id)*c.ps); err != nil {
		return nil, 0, 0, fmt.Errorf("read page %d: %w", id, err)
	}
	if got := le.Uint64(hdr); got != id {
		return nil, 0, 0, fmt.Errorf("page %d identifies as page %d", id, got)
	}
	flags, count, overflow := le.Uint16(hdr[8:]), int64(le.Uint16(hdr[10:])), uint64(le.Uint32(hdr[12:]))
	if overflow >= c.pages-id {
		return nil, 0, 0, fmt.Errorf("page %d: %d overflow pages run past the file's %d pages", id, overflow, c.pages)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p] {
			return nil, 0, 0, fmt.Errorf("page %d is reached twice: %w", p, errLoop)
		}
		c.seen[p] = true
	}
	buf = make([]byte, int64(overflow+1)*c.ps)
	if _, err := c.f.ReadAt(buf, int64(id)*c.ps); err != nil {
		return nil, 0, 0, fmt.Errorf("read page %d: %w", id, err)
	}
	return buf, flags, count, nil
}

func (c *treeCheck) freelist(id uint64) error {
	buf, flags, count, err := c.read(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != 0x10 {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	off := int64(boltPageHeader)
	if count == 0xFFFF { // the real count is the first element
		count = int64(binary.NativeEndian.Uint64(buf[off:]))
		off += 8
	}
	if count < 0 || count > (int64(len(buf))-off)/8 {
		return fmt.Errorf("freelist page %d: %d entries do not fit in it", id, count)
	}
	return nil
}

func (c *treeCheck) page(id uint64, depth int) (err error) {
	if depth > maxTreeDepth {
		return fmt.Errorf("the page tree is deeper than %d levels at page %d: %w", maxTreeDepth, id, errLoop)
	}
	if c.tolerant {
		defer func() {
			if err != nil && !errors.Is(err, errLoop) {
				err = nil
			}
		}()
	}
	buf, flags, count, err := c.read(id)
	if err != nil {
		return err
	}
	switch flags {
	case 0x01: // branch: pos, ksize, child page
		le := binary.NativeEndian
		if count == 0 || boltPageHeader+count*16 > int64(len(buf)) {
			return fmt.Errorf("branch page %d: %d elements do not fit in it", id, count)
		}
		if c.elems -= count; c.elems < 0 {
			return fmt.Errorf("branch page %d: more elements than the file can hold: %w", id, errLoop)
		}
		for e := int64(0); e < count; e++ {
			off := boltPageHeader + e*16
			pos, ks := int64(le.Uint32(buf[off:])), int64(le.Uint32(buf[off+4:]))
			if off+pos+ks > int64(len(buf)) {
				return fmt.Errorf("branch page %d: element %d's key runs past the page", id, e)
			}
			if err := c.page(le.Uint64(buf[off+8:]), depth+1); err != nil {
				return err
			}
		}
		return nil
	case 0x02:
		return c.leaf(id, buf, count, depth)
	}
	return fmt.Errorf("page %d has type %#x, want a branch or leaf page", id, flags)
}

// leaf checks the elements of a leaf page (or an inline bucket's page)
// and follows the buckets it holds.
func (c *treeCheck) leaf(id uint64, buf []byte, count int64, depth int) error {
	le := binary.NativeEndian
	if boltPageHeader+count*16 > int64(len(buf)) {
		return fmt.Errorf("leaf page %d: %d elements do not fit in it", id, count)
	}
	if c.elems -= count; c.elems < 0 {
		return fmt.Errorf("leaf page %d: more elements than the file can hold: %w", id, errLoop)
	}
	for e := int64(0); e < count; e++ {
		off := boltPageHeader + e*16
		flags, pos := le.Uint32(buf[off:]), int64(le.Uint32(buf[off+4:]))
		ks, vs := int64(le.Uint32(buf[off+8:])), int64(le.Uint32(buf[off+12:]))
		if off+pos+ks+vs > int64(len(buf)) {
			return fmt.Errorf("leaf page %d: element %d runs past the page", id, e)
		}
		if flags&0x01 == 0 {
			continue
		}
		v := buf[off+pos+ks : off+pos+ks+vs]
		if len(v) < 16 {
			return fmt.Errorf("leaf page %d: bucket element %d is %d bytes", id, e, len(v))
		}
		root := le.Uint64(v)
		if root != 0 {
			if err := c.page(root, depth+1); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: its own leaf page follows the header.
		in := v[16:]
		if len(in) < boltPageHeader || le.Uint16(in[8:]) != 0x02 {
			return fmt.Errorf("leaf page %d: inline bucket %d is not a leaf page", id, e)
		}
		if depth >= maxTreeDepth {
			return fmt.Errorf("the page tree is deeper than %d levels at page %d: %w", maxTreeDepth, id, errLoop)
		}
		if err := c.leaf(id, in, int64(le.Uint16(in[10:])), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// maxCheckProblems bounds the problems a check reports.
const maxCheckProblems = 8

// Summary is what a check found in a healthy store.
type Summary struct {
	Path      string
	Epoch     string // "" for a store written before epochs existed
	Instances int
	Bytes     int64
	// ReportsPath is the status reports' file (reports.db), "" when there
	// is none yet (the next open makes it); ReportsBytes its size.
	ReportsPath  string
	ReportsBytes int64
}

// CheckBolt verifies the store in dir without changing it: imds.db, then
// reports.db (missing is fine: it is made at the next open), with the
// same checks. It fails with an error matching fs.ErrNotExist when dir
// holds no store, a *DamagedError naming the damaged file, and another
// error when the store cannot be opened (for example, because a running
// prewarm-imds holds it).
func CheckBolt(dir string) (Summary, error) {
	sum, err := checkPath(filepath.Join(dir, FileName))
	if err != nil {
		return sum, err
	}
	rs, err := checkPath(filepath.Join(dir, ReportsFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sum, nil
	case err != nil:
		return sum, err
	}
	sum.ReportsPath, sum.ReportsBytes = rs.Path, rs.Bytes
	return sum, nil
}

func checkPath(path string) (Summary, error) {
	sum := Summary{Path: path}
	if _, err := checkFile(path); err != nil {
		return sum, err
	}
	if fi, err := os.Stat(path); err == nil {
		sum.Bytes = fi.Size()
	}
	db, err := openProtected(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return sum, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		return protect(path, func() error {
			if err := walk(tx); err != nil {
				return err
			}
			if b := tx.Bucket(bInstances); b != nil {
				sum.Instances = b.Stats().KeyN
			}
			if b := tx.Bucket(bMeta); b != nil {
				sum.Epoch = string(b.Get(kEpoch))
			}
			return nil
		})
	})
	if err != nil {
		return sum, err
	}
	var problems []string
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if n++; n <= maxCheckProblems {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("check store %s: %w", path, err)
	}
	if n > 0 {
		more := ""
		if n > maxCheckProblems {
			more = fmt.Sprintf(" (and %d more)", n-maxCheckProblems)
		}
		return sum, &DamagedError{Path: path, Reason: "inconsistent: " + strings.Join(problems, "; ") + more}
	}
	return sum, nil
}

// openProtected opens the bbolt file at path, turning a panic of bbolt's
// (it panics on some damage) into a *DamagedError. A file another process
// holds fails with an error saying so.
func openProtected(path string, o *bolt.Options) (db *bolt.DB, err error) {
	err = protect(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (is a prewarm-imds using it? stop it first)", path, err)
	}
	var de *DamagedError
	if err != nil && !errors.As(err, &de) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return nil, &DamagedError{Path: path, Reason: fmt.Sprintf("bbolt cannot open it: %v", err)}
	}
	return db, err
}

// protect runs fn with memory faults turned into panics and any panic
// into a *DamagedError: bbolt panics on some damage, and reading a page
// of a damaged mapping can fault.
func protect(path string, fn func() error) error {
	err := guard(fn)
	var pe *panicError
	if errors.As(err, &pe) {
		return &DamagedError{Path: path, Reason: "inconsistent: " + pe.Error()}
	}
	return err
}

// panicError is a panic (or memory fault) recovered by guard.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("reading it failed: %v", e.v) }

// guard runs fn with memory faults turned into panics, and returns a
// panic as a *panicError.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{r}
		}
	}()
	return fn()
}

// walk reads every bucket, key and value of tx, so that every reachable
// page is read once (within protect).
func walk(tx *bolt.Tx) error {
	var sink byte
	var visit func(b *bolt.Bucket) error
	visit = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return visit(nb)
				}
				return nil
			}
			for _, c := range v {
				sink ^= c
			}
			return nil
		})
	}
	err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return visit(b) })
	_ = sink
	return err
}
