package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondRunExits: while one agent runs on a state dir, a second
// `prewarm-agent run` on it exits at once with status 7 and says why,
// without writing a report (the first one's sequence stays whole).
func TestSecondRunExits(t *testing.T) {
	imdsURL := startIMDS(t)

	d := t.TempDir()
	args := []string{"--imds-url=" + imdsURL, "--state-dir=" + d + "/state", "--log-dir=" + d + "/log",
		"--run-dir=" + d + "/run", "--root=" + d + "/root", "--platform=none"}
	f := &runFlags{}
	if err := newFlagSet("run", f).Parse(args); err != nil {
		t.Fatal(err)
	}
	first := &program{flags: f, stderr: &bytes.Buffer{}}
	if err := first.Start(nil); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			first.Stop(nil)
		}
	}()
	logPath := filepath.Join(d, "log", "status.jsonl")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if fi, err := os.Stat(logPath); err == nil && fi.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first agent wrote no report")
		}
		time.Sleep(10 * time.Millisecond) // polling the log, not an assertion
	}

	var out, errb bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- realMain(append([]string{"run"}, args...), &out, &errb) }()
	select {
	case c := <-code:
		if c != exitAlreadyRunning {
			t.Errorf("second run: exit status %d, want %d; stderr %q", c, exitAlreadyRunning, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second run did not exit: two agents run on one state dir")
	}
	if msg := errb.String(); !strings.Contains(msg, "already running") || !strings.Contains(msg, d+"/state") {
		t.Errorf("second run's message %q does not say another agent runs on the state dir", msg)
	}
	// Whatever the first agent wrote meanwhile, the log holds one sequence.
	stopped = true
	if err := first.Stop(nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logPath)
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct{ Seq int }
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Seq != i+1 {
			t.Errorf("status log line %d has seq %d (%v): two agents wrote it:\n%s", i+1, r.Seq, err, b)
			break
		}
	}
}
