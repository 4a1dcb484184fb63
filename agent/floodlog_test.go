package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A loop retrying every 10 ms (the fast retries after a renewal) logs its
// first failure and then stays quiet for a second, however many powers of
// two its count passes; a new kind of failure is logged at once.
func TestFailureLogQuietUnderFastRetries(t *testing.T) {
	var buf bytes.Buffer
	f := &failureLog{log: slog.New(slog.NewTextHandler(&buf, nil)), op: "poll"}
	for range 100 {
		f.fail("refused", errors.New("connection refused"), 10*time.Millisecond)
	}
	if n := strings.Count(buf.String(), "poll failed"); n != 1 {
		t.Errorf("100 fast failures logged %d lines, want 1:\n%s", n, buf.String())
	}
	f.fail("timeout", errors.New("i/o timeout"), 10*time.Millisecond)
	if n := strings.Count(buf.String(), "poll failed"); n != 2 {
		t.Errorf("a new kind of failure: %d lines, want 2", n)
	}
	f.logged = time.Now().Add(-2 * time.Second) // a second has passed
	for range 28 {                              // count 101 → 129: passes 128
		f.fail("timeout", errors.New("i/o timeout"), 10*time.Millisecond)
	}
	if n := strings.Count(buf.String(), "poll failed"); n != 3 {
		t.Errorf("a power of two after a quiet second: %d lines, want 3", n)
	}
}
