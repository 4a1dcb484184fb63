package agent

import (
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// count returns how many reports have the state at the generation (events
// excluded).
func count(rs []status.Report, state string, gen int64) int {
	n := 0
	for _, r := range rs {
		if r.State == state && r.Generation == gen && r.Event == "" {
			n++
		}
	}
	return n
}

// TestRestartAfterEachStep restarts the agent after every step of the
// flow and checks: no generation is applied twice, partial-ready and
// provisioned are sent once per generation, seq carries on without a gap.
func TestRestartAfterEachStep(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	h.stop() // restart while waiting
	h.start()
	h.imds.waitFor("second starting", func(rs []status.Report, _ []request) bool { return count(rs, status.StateStarting, 0) == 2 })

	g1 := h.imds.publish(partialDoc)
	h.imds.waitReport(status.StatePartialReady, g1)
	h.stop() // restart after partial-ready
	h.start()
	h.imds.waitReport(status.StateStarting, g1)

	g2 := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.stop() // restart after provisioned
	h.start()
	h.imds.waitReport(status.StateStarting, g2)
	g3 := h.imds.publish(reconfDoc)
	h.imds.waitReport(status.StateProvisioned, g3)
	h.stop()

	got := h.imds.all()
	checkSeq(t, got)
	want := "starting/0 waiting/0 starting/0 waiting/0 applying/1 partial-ready/1 starting/1 applying/2 provisioned/2 starting/2 applying/3 provisioned/3"
	if s := states(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	wantCalls := "hostname=pool-7 users=pool hostname=web-01 timezone=Europe/Berlin users=alice network=1 timezone=UTC"
	if c := strings.Join(h.plat.callList(), " "); c != wantCalls {
		t.Errorf("platform calls = %s\nwant %s", c, wantCalls)
	}
	if s := states(readLog(t, h.logDir)); s != want {
		t.Errorf("status log = %s", s)
	}
}

// TestRestartMidApply stops the agent inside a step: the generation was
// neither applied nor reported, so the next start applies it (once) and
// reports it provisioned once.
func TestRestartMidApply(t *testing.T) {
	h := newHarness(t)
	h.plat.block[status.StepUsers] = make(chan struct{})
	h.plat.entered = make(chan string, 16)
	g := h.imds.publish(finalDoc)
	h.start()
	for s := range h.plat.entered {
		if s == status.StepUsers {
			break
		}
	}
	h.stop()
	delete(h.plat.block, status.StepUsers)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	got := h.imds.all()
	checkSeq(t, got)
	if n := count(got, status.StateProvisioned, g); n != 1 {
		t.Errorf("%d provisioned reports: %s", n, states(got))
	}
	if n := count(got, status.StateFailed, g); n != 0 {
		t.Errorf("a stop mid-apply was reported as failure: %s", states(got))
	}
}

// TestQueuedReportsSurviveRestart: the IMDS refuses every report (503)
// while the agent provisions and is restarted twice; once it accepts
// reports again, it gets all of them, in order, each once.
func TestQueuedReportsSurviveRestart(t *testing.T) {
	h := newHarness(t)
	var refuse atomic.Bool
	refuse.Store(true)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"down for maintenance"}`))
			return true
		}
		return false
	})
	g1 := h.imds.publish(partialDoc)
	h.start()
	waitState(t, h, func(s *State) bool { return s.AppliedGeneration == g1 })
	h.stop()
	h.start()
	g2 := h.imds.publish(finalDoc)
	waitState(t, h, func(s *State) bool { return s.AppliedGeneration == g2 })
	h.stop()
	st, _ := LoadState(h.stateDir)
	want := "starting/0 waiting/0 applying/1 partial-ready/1 starting/1 applying/2 provisioned/2"
	if s := states(st.Queue); s != want {
		t.Fatalf("queued %s\nwant   %s", s, want)
	}
	refuse.Store(false)
	h.start()
	want += " starting/2"
	h.imds.waitFor("all 8 reports", func(rs []status.Report, _ []request) bool { return len(rs) == 8 })
	h.stop()
	got := h.imds.all()
	checkSeq(t, got)
	if s := states(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	if s := states(readLog(t, h.logDir)); s != want {
		t.Errorf("status log %s\nwant       %s", s, want)
	}
}

// waitState waits until the persisted state satisfies cond; the state
// file is the only signal while the IMDS refuses reports. It watches the
// status log (written right after the state) rather than sleeping.
func waitState(t *testing.T, h *harness, cond func(*State) bool) {
	t.Helper()
	err := pollUntil(func() bool {
		s, err := LoadState(h.stateDir)
		return err == nil && cond(s)
	})
	if err != nil {
		t.Fatalf("state never satisfied the condition: %v", err)
	}
}

// TestCrashBetweenStateAndLog: a crash after the state was persisted but
// before the status log was written leaves a report only in the queue; the
// next start logs it (before its own starting report) and delivers it.
func TestCrashBetweenStateAndLog(t *testing.T) {
	h := newHarness(t)
	if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := status.Time{Time: time.Now()}
	st := &State{Version: stateVersion, Seq: 2, Queue: []status.Report{
		{Seq: 1, Time: now, State: status.StateStarting, AgentVersion: "0.1.0"},
		{Seq: 2, Time: now, State: status.StateWaiting, AgentVersion: "0.1.0"},
	}}
	if err := st.save(h.stateDir); err != nil {
		t.Fatal(err)
	}
	sl, err := newStatusLog(h.logDir, h.runDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := sl.write(&st.Queue[0]); err != nil { // only seq 1 made it
		t.Fatal(err)
	}
	h.start()
	h.imds.waitFor("4 reports", func(rs []status.Report, _ []request) bool { return len(rs) == 4 })
	h.stop()
	checkSeq(t, h.imds.all())
	if s := states(readLog(t, h.logDir)); s != "starting/0 waiting/0 starting/0 waiting/0" {
		t.Errorf("status log = %s", s)
	}
}

// TestCorruptStateFile: an unreadable state file is moved aside and the
// agent starts afresh instead of refusing to run.
func TestCorruptStateFile(t *testing.T) {
	h := newHarness(t)
	if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.stateDir+"/"+StateFile, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	if _, err := os.Stat(h.stateDir + "/" + StateFile + ".corrupt"); err != nil {
		t.Errorf("damaged file not kept: %v", err)
	}
}
