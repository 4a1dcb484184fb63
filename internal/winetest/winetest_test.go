package winetest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTempDir(t *testing.T) {
	var d string
	t.Run("use", func(t *testing.T) {
		d = TempDir(t)
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Fatalf("after the test: stat %s: %v; want it removed", d, err)
	}
}

func TestSymlink(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "target")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(d, "link")
	Symlink(t, target, link) // skips where links cannot be made
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("lstat %s: %v, %v; want a symbolic link", link, fi, err)
	}
	if b, err := os.ReadFile(link); err != nil || string(b) != "x" {
		t.Errorf("read through the link: %q, %v", b, err)
	}
}
