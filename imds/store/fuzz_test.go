package store

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzBoltFile hands arbitrary bytes to the checks that run on a store
// file before bbolt uses it, and to the leaf-page scan of RecoverBolt.
// Nothing may crash or loop: a damaged file is an error, never a panic,
// a fault or a hang.
func FuzzBoltFile(f *testing.F) {
	dir, _ := filled(f, 3)
	good, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:100])
	f.Add([]byte{})
	f.Add(make([]byte, 8192))
	// A page tree that loops (bbolt's cursor would go round it forever).
	loop, _ := filled(f, 40)
	loopTree(f, filepath.Join(loop, FileName))
	looped, err := os.ReadFile(filepath.Join(loop, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(looped)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := CheckBolt(dir); err == nil && len(data) == 0 {
			t.Fatal("an empty file checked healthy")
		}
		// The scan, as RecoverBolt runs it on each page.
		sc := scanned{regs: map[string]map[string]bool{}, config: map[string][]byte{}, cgen: map[string]int64{},
			last: map[string][]byte{}, lastSeq: map[string]uint64{}, gens: map[string]int64{}}
		for off := 0; off+boltPageHeader <= len(data); off += 4096 {
			page := data[off:min(off+4096, len(data))]
			budget := int64(len(page)) / 16
			leafElems(page, int64(page[10])|int64(page[11])<<8, 0, &budget, sc.add)
		}
	})
}
