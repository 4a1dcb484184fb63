// Package winetest holds what the tests that windows/wine-test.sh runs under
// Wine need on every OS they build for.
package winetest

import (
	"os"
	"testing"
)

// TempDir is t.TempDir without failing the test on a cleanup error: Wine 8
// lacks the file-disposition call Go's os.RemoveAll uses on Windows (the
// files are in wine-test.sh's throwaway Wine prefix), so a cleanup that
// fails is logged, not an error.
func TempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "prewarm-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Logf("cleanup %s: %v", d, err)
		}
	})
	return d
}
