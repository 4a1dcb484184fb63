package platform

import (
	"log/slog"
	"os"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/windows/internal/sddl"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func sddlAdminKeys() sddl.Descriptor { return sddl.AdministratorsAuthorizedKeys() }

// isWine reports whether the tests run under Wine, whose ntdll exports
// wine_get_version.
func isWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// tempDir is t.TempDir without failing the test on a cleanup error: Wine 8
// lacks the file-disposition call Go's os.RemoveAll uses on Windows.
func tempDir(t *testing.T) string {
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
