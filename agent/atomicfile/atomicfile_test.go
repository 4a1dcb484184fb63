package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prewarm/prewarm/internal/winetest"
)

func TestWrite(t *testing.T) {
	dir := winetest.TempDir(t)
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen string
	o := Options{Mode: 0o600, SyncDir: true, Prepare: func(tmp string) error {
		b, err := os.ReadFile(tmp)
		seen = string(b)
		if filepath.Dir(tmp) != dir {
			t.Errorf("temporary file %s outside %s", tmp, dir)
		}
		return err
	}}
	if err := Write(p, []byte("new"), o); err != nil {
		t.Fatal(err)
	}
	if seen != "new" {
		t.Errorf("Prepare saw %q; want the complete file", seen)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new" {
		t.Fatalf("file = %q, %v", b, err)
	}
	if st, _ := os.Stat(p); runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600", st.Mode().Perm())
	}
	onlyFile(t, dir)
}

// TestWriteFailures: a failed Prepare or a failed rename leaves the file as
// it was and no temporary file behind.
func TestWriteFailures(t *testing.T) {
	dir := winetest.TempDir(t)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("visudo says no")
	err := Write(p, []byte("new"), Options{Mode: 0o644, Prepare: func(string) error { return refuse }})
	if !errors.Is(err, refuse) {
		t.Fatalf("err = %v; want Prepare's", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("file changed to %q", b)
	}
	onlyFile(t, dir)

	// A directory in the way: the rename fails.
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(d, []byte("new"), Options{Mode: 0o644}); err == nil {
		t.Fatal("wrote over a directory")
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), Options{Mode: 0o644}); err == nil {
		t.Fatal("wrote into a missing directory")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("files left: %v", ents)
	}
}

func onlyFile(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("files left in %s: %v", dir, ents)
	}
}
