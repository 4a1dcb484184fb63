// Package winetest holds what the tests that windows/wine-test.sh runs under
// Wine need on every OS they build for.
package winetest

import (
	"os"
	"runtime"
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

// Symlink makes newname a symbolic link to oldname, or skips the test where
// symbolic links cannot be made: Windows grants creating one only with
// SeCreateSymbolicLinkPrivilege (an elevated administrator) or in developer
// mode, and Wine 8's CreateSymbolicLink reports success and creates nothing
// (checked with Lstat). Elsewhere a failure is the test's error.
func Symlink(t testing.TB, oldname, newname string) {
	t.Helper()
	err := os.Symlink(oldname, newname)
	if err == nil {
		_, err = os.Lstat(newname)
	}
	if err == nil {
		return
	}
	if runtime.GOOS == "windows" {
		t.Skipf("symbolic links cannot be made here (no SeCreateSymbolicLinkPrivilege, or Wine): %v", err)
	}
	t.Fatalf("symlink %s -> %s: %v", newname, oldname, err)
}
