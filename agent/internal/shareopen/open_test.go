package shareopen

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/prewarm/prewarm/internal/winetest"
)

// TestRotateWhileOpen: a file held open for appending, and another handle
// held open for reading, can be renamed away (a log rotation); the writer
// keeps writing to the renamed file, and a new file takes the old name.
// On Windows this fails with a sharing violation without FILE_SHARE_DELETE.
func TestRotateWhileOpen(t *testing.T) {
	dir := winetest.TempDir(t)
	p := filepath.Join(dir, "status.jsonl")
	w, err := Open(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString("one\n"); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatalf("rename while open: %v", err)
	}
	if _, err := w.WriteString("two\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p + ".1"); err != nil || string(b) != "one\ntwo\n" {
		t.Errorf("rotated file = %q, %v; want both lines", b, err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "one\ntwo\n" {
		t.Errorf("reader read %q, %v", b, err)
	}
	n, err := Open(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("a new file under the old name: %v", err)
	}
	n.Close()
}

// TestFlags: append appends, O_TRUNC truncates, O_EXCL refuses an
// existing file, and a missing file without O_CREATE is os.ErrNotExist.
func TestFlags(t *testing.T) {
	dir := winetest.TempDir(t)
	p := filepath.Join(dir, "f")
	if _, err := Open(p, os.O_RDONLY, 0); !os.IsNotExist(err) {
		t.Errorf("missing file: %v; want not exist", err)
	}
	for _, s := range []string{"a", "b"} {
		f, err := Open(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if b, _ := os.ReadFile(p); string(b) != "ab" {
		t.Errorf("after two appends: %q", b)
	}
	if _, err := Open(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !os.IsExist(err) {
		t.Errorf("O_EXCL on an existing file: %v; want exists", err)
	}
	f, err := Open(p, os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
		t.Errorf("after O_TRUNC: %v, %v", fi, err)
	}
}
