package platform

import (
	"log/slog"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/internal/winetest"
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

// tempDir is winetest.TempDir: t.TempDir without failing the test on
// Wine 8's cleanup error.
var tempDir = winetest.TempDir
