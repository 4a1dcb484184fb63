package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/internal/sshtest"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// reportKeys posts a report carrying keys from the guest at from and
// returns the IMDS's answer code.
func (m *testIMDS) reportKeys(from string, gen int64, state string, keys []status.HostKey) int {
	m.t.Helper()
	return m.postReport(from, status.Report{Generation: gen, State: state, SSHHostKeys: keys}).Code
}

// TestKnownHosts: the keys a guest reported come out of known-hosts as
// lines ssh-keygen finds under the document's hostname and the registered
// address, or under --host; the status table lists their fingerprints;
// the admin API keeps them with the report.
func TestKnownHosts(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-1", "--address", "127.0.0.21")
	m.mustCLI(`{"hostname":"web-1"}`, "publish", "vm-1", "-")

	code, _, errs := m.cli("", "known-hosts", "vm-1")
	if code != cli.ExitNotFound || !strings.Contains(errs, "no SSH host keys") {
		t.Fatalf("before any report: exit %d: %s", code, errs)
	}

	ed, ed2 := status.HostKeyOf(sshtest.NewKey()), status.HostKeyOf(sshtest.NewKey())
	m.reportKeys("127.0.0.21", 1, status.StateApplying, nil)
	if c := m.reportKeys("127.0.0.21", 1, status.StateProvisioned, []status.HostKey{ed, ed2}); c != http.StatusNoContent {
		t.Fatalf("report with keys: %d", c)
	}
	out := m.mustCLI("", "known-hosts", "vm-1")
	want := "web-1,127.0.0.21 " + ed.Type + " " + ed.Key + "\n" + "web-1,127.0.0.21 " + ed2.Type + " " + ed2.Key + "\n"
	if out != want {
		t.Errorf("known-hosts =\n%s\nwant\n%s", out, want)
	}
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"web-1", "127.0.0.21"} {
			if o, err := exec.Command(keygen, "-F", h, "-f", kh).CombinedOutput(); err != nil || !strings.Contains(string(o), ed.Key) {
				t.Errorf("ssh-keygen -F %s: %v: %s", h, err, o)
			}
		}
	}

	out = m.mustCLI("", "known-hosts", "vm-1", "--host", "[web-1.example.com]:2222", "--host", "203.0.113.7")
	if first := strings.SplitN(out, "\n", 2)[0]; first != "[web-1.example.com]:2222,203.0.113.7 "+ed.Type+" "+ed.Key {
		t.Errorf("with --host: %q", first)
	}
	for _, bad := range []string{"a b", "a#b", "x\x1b[2J"} {
		if code, _, errs := m.cli("", "known-hosts", "vm-1", "--host", bad); code != cli.ExitUsage || !strings.Contains(errs, "--host") {
			t.Errorf("--host %q: exit %d: %s", bad, code, errs)
		}
	}

	table := m.mustCLI("", "status", "vm-1")
	if !strings.Contains(table, "SSH host keys (report 2, generation 1 provisioned):") || !strings.Contains(table, ed.Fingerprint) || !strings.Contains(table, ed2.Fingerprint) {
		t.Errorf("status table without the keys:\n%s", table)
	}
	var h api.StatusHistory
	if err := json.Unmarshal([]byte(m.mustCLI("", "status", "vm-1", "-o", "json")), &h); err != nil {
		t.Fatal(err)
	}
	if got := h.Reports[len(h.Reports)-1].SSHHostKeys; len(got) != 2 || got[0] != ed {
		t.Errorf("admin API's report keys %+v", got)
	}

	// A later generation that failed: the keys may be stale, said on stderr.
	m.mustCLI(`{"hostname":"web-2"}`, "publish", "vm-1", "-")
	m.reportKeys("127.0.0.21", 2, status.StateFailed, nil)
	code, out, errs = m.cli("", "known-hosts", "vm-1")
	if code != 0 || !strings.Contains(errs, "generation 2 reported failed since") || !strings.HasPrefix(out, "web-2,127.0.0.21 ") {
		t.Errorf("after a failed generation: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestKnownHostsRefusedReports: the IMDS refuses a report whose key does
// not match its fingerprint, or with too many keys, naming the field.
func TestKnownHostsRefusedReports(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-1", "--address", "127.0.0.22")
	k := status.HostKeyOf(sshtest.NewKey())
	bad := k
	bad.Fingerprint = status.HostKeyOf(sshtest.NewKey()).Fingerprint
	if c := m.reportKeys("127.0.0.22", 0, status.StateProvisioned, []status.HostKey{bad}); c != http.StatusBadRequest {
		t.Errorf("mismatched fingerprint: %d, want 400", c)
	}
	many := make([]status.HostKey, status.MaxHostKeys+1)
	for i := range many {
		many[i] = k
	}
	if c := m.reportKeys("127.0.0.22", 0, status.StateProvisioned, many); c != http.StatusBadRequest {
		t.Errorf("%d keys: %d, want 400", len(many), c)
	}
	if code, _, _ := m.cli("", "known-hosts", "vm-1"); code != cli.ExitNotFound {
		t.Errorf("refused keys were kept: exit %d", code)
	}
}
