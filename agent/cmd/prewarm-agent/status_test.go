package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/atomicfile"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// writeCurrent replaces runDir's current report as the agent does (a
// temporary file renamed over it).
func writeCurrent(t *testing.T, runDir string, seq uint64, gen int64, state, errText string) {
	t.Helper()
	b, _ := json.Marshal(status.Report{Seq: seq, Time: status.Time{Time: time.Now()}, Generation: gen, State: state, Error: errText, AgentVersion: "test"})
	// As the agent writes it: atomically, and on Windows past a reader
	// that holds the file for a moment.
	if err := atomicfile.Write(filepath.Join(runDir, agent.StatusCurrentFile), b, atomicfile.Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
}

type agentResult struct {
	code           int
	stdout, stderr string
}

func agentStatus(runDir string, args ...string) agentResult {
	var o, e bytes.Buffer
	code := realMain(append([]string{"status", "--run-dir", runDir}, args...), &o, &e)
	return agentResult{code, o.String(), e.String()}
}

// TestStatusExitCodes: prewarm-agent status's exit codes: no status yet,
// usage errors, a state already reached or failed, a timeout.
func TestStatusExitCodes(t *testing.T) {
	run := t.TempDir()
	if r := agentStatus(run); r.code != cli.ExitUnreachable || !strings.Contains(r.stderr, "no status yet") || !strings.Contains(r.stderr, "is prewarm-agent running") {
		t.Errorf("no status: %+v", r)
	}
	for _, args := range [][]string{{"--until", "provisioned"}, {"--wait", "--until", "ready"}, {"--wait", "--follow"}, {"--timeout", "1s"}, {"extra"}} {
		if r := agentStatus(run, args...); r.code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want 2; %q", args, r.code, r.stderr)
		}
	}
	writeCurrent(t, run, 4, 2, status.StateProvisioned, "")
	if r := agentStatus(run); r.code != 0 || !strings.Contains(r.stdout, "provisioned") {
		t.Errorf("status: %+v", r)
	}
	if r := agentStatus(run, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"state":"provisioned"`) {
		t.Errorf("status -o json: %+v", r)
	}
	if r := agentStatus(run, "--wait"); r.code != 0 || !strings.Contains(r.stdout, "provisioned") {
		t.Errorf("--wait, provisioned already: %+v", r)
	}
	if r := agentStatus(run, "--wait", "--until", "partial-ready", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"state": "provisioned"`) {
		t.Errorf("--wait --until partial-ready, provisioned already: %+v", r)
	}
	if r := agentStatus(run, "--wait", "--generation", "3", "--timeout", "1s"); r.code != cli.ExitTimeout || !strings.Contains(r.stderr, "generation 2 provisioned") {
		t.Errorf("--wait --generation 3: %+v", r)
	}
	writeCurrent(t, run, 5, 3, status.StateFailed, "users: shell /bin/nope does not exist")
	if r := agentStatus(run, "--wait"); r.code != cli.ExitGuestFailed || !strings.Contains(r.stderr, "generation 3 failed to apply") || !strings.Contains(r.stderr, "/bin/nope") {
		t.Errorf("--wait, failed: %+v", r)
	}
	if r := agentStatus(run, "--wait", "--until", "failed"); r.code != 0 {
		t.Errorf("--wait --until failed, failed: %+v", r)
	}
}

// TestStatusWait: --wait follows the current report as the agent replaces
// it, ending on the one that reaches the state; it also waits for an agent
// that has not written a report yet, and --until any for the next report.
func TestStatusWait(t *testing.T) {
	for _, tt := range []struct {
		until  string
		before bool // a report is there before the wait: applying, seq 1
		states []string
		code   int
		last   string
	}{
		{until: "provisioned", states: []string{"starting", "waiting", "applying", "partial-ready", "applying", "provisioned"}, code: 0, last: "provisioned"},
		{until: "partial-ready", before: true, states: []string{"partial-ready"}, code: 0, last: "partial-ready"},
		{until: "provisioned", before: true, states: []string{"failed"}, code: cli.ExitGuestFailed, last: "failed"},
		{until: "any", before: true, states: []string{"applying"}, code: 0, last: "applying"},
		{until: "any", before: true, states: []string{"failed"}, code: cli.ExitGuestFailed, last: "failed"},
	} {
		t.Run(tt.until+"/"+strings.Join(tt.states, ","), func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "run") // not there yet: the agent makes it
			seq := uint64(0)
			if tt.before {
				os.MkdirAll(run, 0o755)
				seq++
				writeCurrent(t, run, seq, 1, status.StateApplying, "")
			}
			ch := make(chan agentResult, 1)
			args := []string{"--wait", "--until", tt.until, "-o", "json"}
			if tt.until == "any" {
				args = append(args, "--after", "1") // the report there before
			}
			go func() { ch <- agentStatus(run, args...) }()
			// Wait for the run dir (made by the waiter when missing),
			// then write the reports; each one replaces the last.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(run); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no run dir")
				}
			}
			for _, st := range tt.states {
				select {
				case r := <-ch:
					ch <- r // ended early: checked below
				default:
				}
				seq++
				errText := ""
				if st == status.StateFailed {
					errText = "step users failed"
				}
				writeCurrent(t, run, seq, 1, st, errText)
			}
			var r agentResult
			select {
			case r = <-ch:
			case <-time.After(60 * time.Second):
				t.Fatal("the wait did not end")
			}
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d: %+v", r.code, tt.code, r)
			}
			var got status.Report
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("output %q: %v", r.stdout, err)
			}
			if got.State != tt.last || got.Seq != seq {
				t.Errorf("ended on %s seq %d, want %s seq %d", got.State, got.Seq, tt.last, seq)
			}
		})
	}
}

// TestRunSettingsPrecedence: run takes a setting from its flag over
// PREWARM_AGENT_<FLAG> over its --config file over the default; an unknown
// setting in the file is a usage error naming the line. (An invalid
// --platform stops run before it starts anything, naming the value it got.)
func TestRunSettingsPrecedence(t *testing.T) {
	d := t.TempDir()
	conf := filepath.Join(d, "agent.conf")
	os.WriteFile(conf, []byte("# agent settings\nplatform = from-file\nlog-level = debug\n"), 0o644)
	base := []string{"run", "--state-dir", d + "/state", "--log-dir", d + "/log", "--run-dir", d + "/run", "--root", d + "/root"}
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"file", nil, []string{"--config", conf}, `"from-file"`},
		{"config path from env", map[string]string{"PREWARM_AGENT_CONFIG": conf}, nil, `"from-file"`},
		{"env over file", map[string]string{"PREWARM_AGENT_PLATFORM": "from-env"}, []string{"--config", conf}, `"from-env"`},
		{"flag over env", map[string]string{"PREWARM_AGENT_PLATFORM": "from-env"}, []string{"--config", conf, "--platform", "from-flag"}, `"from-flag"`},
		{"opts variable of the unit is not a flag", map[string]string{"PREWARM_AGENT_OPTS": "--bogus", "PREWARM_AGENT_PLATFORM": "from-env"}, nil, `"from-env"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var o, e bytes.Buffer
			code := realMain(append(append([]string{}, base...), tt.args...), &o, &e)
			if code != cli.ExitFailure || !strings.Contains(e.String(), "--platform: "+tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 naming --platform %s", code, e.String(), tt.want)
			}
		})
	}
	os.WriteFile(conf, []byte("platform = none\nimds = http://x\n"), 0o644)
	var o, e bytes.Buffer
	if code := realMain(append(append([]string{}, base...), "--config", conf), &o, &e); code != cli.ExitUsage || !strings.Contains(e.String(), "line 2") || !strings.Contains(e.String(), `unknown setting "imds"`) {
		t.Errorf("unknown setting: exit %d, stderr %q", code, e.String())
	}
}

// TestStatusWaitAnyWithoutAfter: --until any without --after, started
// before the agent's first report, ends on that first report: it is the
// next one, not the one "there when the wait started". (The waiter makes
// the run dir after it looked for a current report, so the dir's being
// there orders the write after that look.)
func TestStatusWaitAnyWithoutAfter(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	ch := make(chan agentResult, 1)
	go func() { ch <- agentStatus(run, "--wait", "--until", "any", "--timeout", "20s", "-o", "json") }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(run); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no run dir")
		}
	}
	writeCurrent(t, run, 1, 1, status.StatePartialReady, "")
	r := <-ch
	if r.code != 0 {
		t.Fatalf("exit %d: %+v", r.code, r)
	}
	var got status.Report
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	if got.Seq != 1 || got.State != status.StatePartialReady {
		t.Errorf("ended on %s seq %d, want partial-ready seq 1", got.State, got.Seq)
	}
}
