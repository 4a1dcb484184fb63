package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/internal/syncbuf"
)

// TestPanicLogBounded: a request that panics the handler gets a 500 and
// is counted every time, but a guest repeating it cannot flood the log with
// stacks: one stack per interval, the rest counted as suppressed.
func TestPanicLogBounded(t *testing.T) {
	var buf syncbuf.Buffer
	s := newTestServer(t, Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	h := s.recoverer("guest", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	const n = 50
	for range n {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metadata/v1/config", nil))
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("panicking handler answered %d, want 500", rec.Code)
		}
	}
	if got := s.m.panics.Value(); got != n {
		t.Errorf("panics counter = %v, want %d", got, n)
	}
	out := buf.String()
	if got := strings.Count(out, `stack="`); got != 1 {
		t.Errorf("%d stacks in the log after %d panics, want 1:\n%.2000s", got, n, out)
	}
	if got := strings.Count(out, "handler panic"); got != 1 {
		t.Errorf("%d panic lines at info and above after %d panics, want 1", got, n)
	}
	// The next logged panic says how many were left out.
	s.panicLog.last.Store(0)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.Contains(buf.String(), "suppressed="+strconv.Itoa(n-1)) {
		t.Errorf("the next panic line does not say suppressed=%d:\n%.3000s", n-1, buf.String())
	}
}
