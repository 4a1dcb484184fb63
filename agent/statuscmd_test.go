package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

func TestPrintStatus(t *testing.T) {
	dir := t.TempDir()
	if err := PrintStatus(&bytes.Buffer{}, dir, false); err == nil || !strings.Contains(err.Error(), "no status yet") {
		t.Errorf("no file: err %v", err)
	}
	sl, err := newStatusLog(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := status.Report{Seq: 7, Time: status.Time{Time: time.Date(2026, 11, 21, 10, 0, 0, 123e6, time.UTC)}, Generation: 4, State: status.StateFailed,
		Steps: []status.Step{{Name: "hostname", OK: true, MS: 3, Changed: true}, {Name: "users", MS: 41, Error: "boom"}}, Error: "users: boom", AgentVersion: "0.1.0"}
	if err := sl.write(&r); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := PrintStatus(&b, dir, false); err != nil {
		t.Fatal(err)
	}
	want := `state:       failed
generation:  4
time:        2026-11-21T10:00:00.123Z
seq:         7
agent:       0.1.0
steps:       hostname ok 3ms (changed), users FAILED 41ms
error:       users: boom
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := PrintStatus(&b, dir, true); err != nil {
		t.Fatal(err)
	}
	var back status.Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Seq != 7 {
		t.Errorf("--json printed %s", b.String())
	}
}

// lineWriter hands each write to a channel, so the test waits on output.
type lineWriter struct {
	ch chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.ch <- string(p)
	return len(p), nil
}

func TestFollowStatus(t *testing.T) {
	dir := t.TempDir()
	sl, err := newStatusLog(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	rep := func(seq uint64, state string) *status.Report {
		return &status.Report{Seq: seq, Time: status.Time{Time: time.Now()}, State: state, Generation: 1}
	}
	if err := sl.write(rep(1, status.StateStarting)); err != nil {
		t.Fatal(err)
	}
	w := &lineWriter{ch: make(chan string, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- FollowStatus(ctx, w, dir, true) }()
	next := func() status.Report {
		t.Helper()
		select {
		case l := <-w.ch:
			var r status.Report
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return r
		case <-time.After(waitLimit):
			t.Fatal("no line")
		}
		return status.Report{}
	}
	if r := next(); r.Seq != 1 {
		t.Errorf("first line seq %d, want the last report (1)", r.Seq)
	}
	// The watcher is set up before the first line is printed, so writes
	// from now on are seen.
	for i := uint64(2); i <= 4; i++ {
		if err := sl.write(rep(i, status.StateApplying)); err != nil {
			t.Fatal(err)
		}
		if r := next(); r.Seq != i {
			t.Errorf("got seq %d, want %d", r.Seq, i)
		}
	}
	// The log replaced (rotation): following goes on in the new file.
	p := filepath.Join(dir, StatusLogFile)
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	if err := sl.write(rep(5, status.StateProvisioned)); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.Seq != 5 {
		t.Errorf("after rotation got seq %d, want 5", r.Seq)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestStatusLogRotation(t *testing.T) {
	defer func(n int64) { maxLogBytes = n }(maxLogBytes)
	maxLogBytes = 300
	dir := t.TempDir()
	sl, err := newStatusLog(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		if err := sl.write(&status.Report{Seq: i, Time: status.Time{Time: time.Now()}, State: status.StateWaiting}); err != nil {
			t.Fatal(err)
		}
		if got := sl.lastSeq(); got != i {
			t.Fatalf("lastSeq after %d = %d", i, got)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, StatusLogFile+".1")); err != nil {
		t.Errorf("no rotated file: %v", err)
	}
}
