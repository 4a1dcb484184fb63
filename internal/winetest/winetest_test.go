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
