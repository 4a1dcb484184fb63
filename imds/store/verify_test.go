package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// filled makes a store in a new directory holding n instances, each with a
// published document, a few generations and a status report, and returns
// the directory and the epoch.
func filled(t testing.TB, n int) (string, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 600) // spread the instances over many pages
	for i := range n {
		id := fmt.Sprintf("vm-%03d", i)
		reg := &Registration{Addresses: []string{fmt.Sprintf("10.0.%d.%d", i/200, i%200+1)}}
		for range 3 {
			if _, err := s.Apply(ctx, id, Change{Register: reg, Publish: stamp(fmt.Sprintf(`"hostname":%q`, id+pad))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AppendStatus(ctx, id, status.Report{Seq: 1, Time: status.Time{Time: time.Unix(1700000000, 0)}, State: "waiting"}); err != nil {
			t.Fatal(err)
		}
	}
	epoch := s.Epoch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, epoch
}

// wantDamaged checks that err is a *DamagedError naming the file, saying
// why, and telling the operator what to do.
func wantDamaged(t *testing.T, err error, path, reason string) {
	t.Helper()
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v (%T), want a *DamagedError", err, err)
	}
	msg := err.Error()
	for _, s := range []string{path, reason, "restore it from a backup", "prewarm-imds store check", "prewarm-imds store recover"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not say %q", msg, s)
		}
	}
}

func TestOpenBoltRefusesDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
	}{
		{"empty file", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, "0 bytes"},
		{"truncated", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"shorter than its meta pages", func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"garbage", func(t *testing.T, path string) {
			b := make([]byte, 64<<10)
			for i := range b {
				b[i] = byte(i*7 + 3)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a prewarm-imds store"},
		{"data page overwritten", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = 0xA5
			}
			// Every page past the two meta pages and the first few.
			for off := int64(4 * 4096); off < fi.Size(); off += 4096 {
				if _, err := f.WriteAt(junk, off); err != nil {
					t.Fatal(err)
				}
			}
		}, "inconsistent"},
		{"page tree with a loop", func(t *testing.T, path string) { loopTree(t, path) }, "reached twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := filled(t, 40)
			path := filepath.Join(dir, FileName)
			tt.damage(t, path)
			before, _ := os.ReadFile(path)
			s, err := OpenBolt(dir)
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt accepted a damaged store")
			}
			wantDamaged(t, err, path, tt.reason)
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Fatal("OpenBolt changed the damaged file")
			}
			if _, err := CheckBolt(dir); err == nil {
				t.Fatal("CheckBolt passed a damaged store")
			} else {
				wantDamaged(t, err, path, tt.reason)
			}
		})
	}
}

func TestCheckBoltHealthy(t *testing.T) {
	dir, epoch := filled(t, 5)
	sum, err := CheckBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Instances != 5 || sum.Epoch != epoch {
		t.Fatalf("summary %+v, want 5 instances and epoch %s", sum, epoch)
	}
	if _, err := CheckBolt(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check of a directory without a store: %v, want ErrNotExist", err)
	}
}

func TestBoltEpoch(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	e := s.Epoch()
	if len(e) != 16 || strings.Trim(e, "0123456789abcdef") != "" {
		t.Fatalf("epoch %q is not 16 lowercase hex digits", e)
	}
	s.Close()
	if e2 := open(t, dir).Epoch(); e2 != e {
		t.Fatalf("epoch changed across a restart: %s then %s", e, e2)
	}
	if e3 := open(t, t.TempDir()).Epoch(); e3 == e {
		t.Fatal("two stores share an epoch")
	}
}

func TestBoltRaiseGeneration(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	reg := &Registration{Addresses: []string{"10.0.0.4"}}
	if _, err := s.Apply(ctx, "vm-1", Change{Register: reg, Publish: stamp(`"x":1`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseGeneration(ctx, "vm-1", 9); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseGeneration(ctx, "vm-1", 5); err != nil { // never lowers
		t.Fatal(err)
	}
	rec, err := s.Apply(ctx, "vm-1", Change{Publish: stamp(`"x":2`)})
	if err != nil || rec.Generation != 10 {
		t.Fatalf("publish after raising the floor to 9: generation %d, %v; want 10", rec.Generation, err)
	}
	if err := s.RaiseGeneration(ctx, "nobody", 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("raise for an unknown id: %v, want ErrNotFound", err)
	}
}

func TestRecoverBolt(t *testing.T) {
	ctx := context.Background()
	dir, epoch := filled(t, 40)
	path := filepath.Join(dir, FileName)
	cutLastPages(t, path)
	damaged, _ := os.ReadFile(path)
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovered: %+v", res)
	if kept, err := os.ReadFile(res.DamagedPath); err != nil || string(kept) != string(damaged) {
		t.Fatalf("damaged file not kept as it was at %s: %v", res.DamagedPath, err)
	}
	if res.Instances != 40 {
		t.Fatalf("recovered %d instances, lost %q: want all 40 (their leaf pages are intact)", res.Instances, res.Lost)
	}
	s := open(t, dir)
	if s.Epoch() == epoch || s.Epoch() != res.Epoch {
		t.Fatalf("recovered store's epoch %s (reported %s); the damaged one's was %s: want a new one", s.Epoch(), res.Epoch, epoch)
	}
	recs, err := s.Load(ctx)
	if err != nil || len(recs) != res.Instances {
		t.Fatalf("Load: %d records, %v", len(recs), err)
	}
	published := 0
	for _, r := range recs {
		if len(r.Addresses) != 1 {
			t.Fatalf("recovered record %+v", r)
		}
		if r.Config == nil {
			// Its document was on a page cut off: said so.
			if !strings.Contains(strings.Join(res.Lost, "\n"), fmt.Sprintf("config of %q", r.ID)) {
				t.Fatalf("%s recovered without its config, and Lost does not say so: %q", r.ID, res.Lost)
			}
			continue
		}
		published++
		if r.Generation != 3 {
			t.Fatalf("recovered record %s has generation %d, want 3", r.ID, r.Generation)
		}
		// Generations go on from where they were; ownership is kept.
		next, err := s.Apply(ctx, r.ID, Change{Publish: stamp(`"x":1`)})
		if err != nil || next.Generation != 4 {
			t.Fatalf("publish to recovered %s: %d, %v", r.ID, next.Generation, err)
		}
		if _, err := s.Apply(ctx, "intruder", Change{Register: &Registration{Addresses: r.Addresses}}); err == nil {
			t.Fatalf("address of recovered %s was free to take", r.ID)
		}
	}
	if published == 0 {
		t.Fatal("no document recovered")
	}
	if _, err := CheckBolt(dir); err == nil {
		t.Fatal("CheckBolt while the store is open succeeded") // the server holds the lock
	}
	s.Close()
	if _, err := CheckBolt(dir); err != nil {
		t.Fatalf("recovered store does not check: %v", err)
	}
	// A healthy store is not rebuilt unless forced.
	if _, err := RecoverBolt(dir, false); err == nil || !strings.Contains(err.Error(), "not damaged") {
		t.Fatalf("recover of a healthy store: %v", err)
	}
}

func TestRecoverBoltEmptyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Instances != 0 || res.DamagedPath == "" {
		t.Fatalf("result %+v", res)
	}
	s := open(t, dir)
	if s.Epoch() != res.Epoch {
		t.Fatalf("epoch %s, reported %s", s.Epoch(), res.Epoch)
	}
}

// newestMetaOf is the newest valid meta page of the bbolt file at path.
func newestMetaOf(t testing.TB, path string) boltMeta {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, ok := newestMeta(f)
	if !ok {
		t.Fatalf("no valid meta page in %s", path)
	}
	return m
}

// loopTree points the first child of a branch page of the store's tree
// back at the page itself: bbolt's cursor would go round it forever.
func loopTree(t testing.TB, path string) {
	t.Helper()
	m := newestMetaOf(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.NativeEndian
	page := func(id uint64) []byte { return b[id*uint64(m.pageSize):] }
	// The root bucket's leaf lists the buckets; the first one not inline
	// whose root is a branch page is the target.
	root := page(m.root)
	for e := 0; e < int(le.Uint16(root[10:])); e++ {
		el := root[boltPageHeader+e*16:]
		if le.Uint32(el)&1 == 0 {
			continue
		}
		v := el[le.Uint32(el[4:])+le.Uint32(el[8:]):]
		id := le.Uint64(v)
		if id == 0 || le.Uint16(page(id)[8:]) != 0x01 {
			continue
		}
		le.PutUint64(page(id)[boltPageHeader+8:], id)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no bucket of the store has a branch page")
}

// A store whose page tree loops is salvaged by the page scan alone.
func TestRecoverBoltLoopingTree(t *testing.T) {
	dir, epoch := filled(t, 40)
	loopTree(t, filepath.Join(dir, FileName))
	res, err := RecoverBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Instances != 40 || len(res.Scanned) != 40 || res.Epoch == epoch {
		t.Fatalf("recovered %d instances (%d by the page scan), epoch %s (was %s); lost %q", res.Instances, len(res.Scanned), res.Epoch, epoch, res.Lost)
	}
	if _, err := CheckBolt(dir); err != nil {
		t.Fatalf("recovered store does not check: %v", err)
	}
}

// cutLastPages truncates the bbolt file at path by the last two pages in
// use (the file itself is longer: bbolt grows it ahead).
func cutLastPages(t *testing.T, path string) {
	t.Helper()
	m := newestMetaOf(t, path)
	if err := os.Truncate(path, int64(m.pages-2)*int64(m.pageSize)); err != nil {
		t.Fatal(err)
	}
}
