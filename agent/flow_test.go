package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/status"
)

const (
	partialDoc = `{"partial": true, "hostname": "pool-7", "users": [{"name": "pool", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f pool@host"]}]}`
	finalDoc   = `{"hostname": "web-01", "timezone": "Europe/Berlin", "users": [{"name": "alice", "sudo": "nopasswd"}], "network": {"interfaces": [{"mac": "52:54:00:12:34:56", "dhcp4": true}]}}`
	reconfDoc  = `{"timezone": "UTC"}`
)

func TestFlowPartialFinalReconfigure(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)

	g1 := h.imds.publish(partialDoc)
	pr := h.imds.waitReport(status.StatePartialReady, g1)
	if names := stepNames(pr.Steps); names != "hostname,users" {
		t.Errorf("partial-ready steps = %s, want hostname,users (absent sections are not steps)", names)
	}

	g2 := h.imds.publish(finalDoc)
	pv := h.imds.waitReport(status.StateProvisioned, g2)
	if names := stepNames(pv.Steps); names != "hostname,timezone,users,network" {
		t.Errorf("provisioned steps = %s, want the fixed order hostname,timezone,users,network", names)
	}
	for _, s := range pv.Steps {
		if !s.OK || !s.Changed || s.MS < 0 {
			t.Errorf("step %+v: want ok and changed", s)
		}
	}

	g3 := h.imds.publish(reconfDoc)
	h.imds.waitReport(status.StateProvisioned, g3)

	got := h.imds.all()
	checkSeq(t, got)
	want := []string{"starting/0", "waiting/0", "applying/1", "partial-ready/1", "applying/2", "provisioned/2", "applying/3", "provisioned/3"}
	if s := states(got); s != strings.Join(want, " ") {
		t.Errorf("reports = %s\nwant      %s", s, strings.Join(want, " "))
	}
	wantCalls := "hostname=pool-7 users=pool hostname=web-01 timezone=Europe/Berlin users=alice network=1 timezone=UTC"
	if c := strings.Join(h.plat.callList(), " "); c != wantCalls {
		t.Errorf("platform calls = %s\nwant %s", c, wantCalls)
	}
	h.stop()

	// The status log holds exactly what was sent, in order, 0644; the
	// current file the last report.
	logged := readLog(t, h.logDir)
	if states(logged) != states(got) {
		t.Errorf("status log = %s\nsent       %s", states(logged), states(got))
	}
	for _, p := range []string{filepath.Join(h.logDir, StatusLogFile), filepath.Join(h.runDir, StatusCurrentFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantMode(0o644); fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	var cur status.Report
	b, _ := os.ReadFile(filepath.Join(h.runDir, StatusCurrentFile))
	if err := json.Unmarshal(b, &cur); err != nil || cur.Seq != got[len(got)-1].Seq {
		t.Errorf("status.json = %s (err %v), want seq %d", b, err, got[len(got)-1].Seq)
	}
	st, err := LoadState(h.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.AppliedGeneration != g3 || st.AppliedState != status.StateProvisioned || st.Seq != 8 {
		t.Errorf("state = %+v", st)
	}
	// The stop may come between the IMDS taking the last report and the
	// agent hearing so: then it stays queued (at-least-once delivery).
	for _, r := range st.Queue {
		if r.Seq != 8 {
			t.Errorf("report %d still queued after the IMDS took it", r.Seq)
		}
	}
}

func TestStepFailureThenNextGeneration(t *testing.T) {
	h := newHarness(t)
	h.plat.setFail(status.StepUsers, errors.New(`create user "alice": useradd exited 9`))
	h.start()
	g1 := h.imds.publish(finalDoc)
	f := h.imds.waitReport(status.StateFailed, g1)
	if !strings.Contains(f.Error, `users: create user "alice"`) {
		t.Errorf("error = %q", f.Error)
	}
	// Every step ran; only users failed; what succeeded is kept.
	var okSteps, bad []string
	for _, s := range f.Steps {
		if s.OK {
			okSteps = append(okSteps, s.Name)
		} else {
			bad = append(bad, s.Name+":"+s.Error)
		}
	}
	if strings.Join(okSteps, ",") != "hostname,timezone,network" || len(bad) != 1 || !strings.HasPrefix(bad[0], "users:create user") {
		t.Errorf("steps ok=%v failed=%v", okSteps, bad)
	}

	h.plat.setFail(status.StepUsers, nil)
	g2 := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g2)
	for _, r := range h.imds.all() {
		if r.Generation == g1 && (r.State == status.StateProvisioned || r.State == status.StatePartialReady) {
			t.Errorf("generation %d reported %s although a step failed", g1, r.State)
		}
	}
	checkSeq(t, h.imds.all())
}

func stepNames(steps []status.Step) string {
	var n []string
	for _, s := range steps {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func states(rs []status.Report) string {
	var s []string
	for _, r := range rs {
		x := r.State
		if r.Event != "" {
			x += "+" + r.Event
		}
		s = append(s, x+"/"+itoa(r.Generation))
	}
	return strings.Join(s, " ")
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func readLog(t *testing.T, dir string) []status.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, StatusLogFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []status.Report
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r status.Report
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("status log line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}
