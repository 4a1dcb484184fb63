package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// testIMDS is an in-process IMDS whose admin API the CLI reaches over
// loopback TCP (--admin-url) and whose guests report through its guest
// handler, by source address.
type testIMDS struct {
	t     *testing.T
	srv   *server.Server
	admin string
	seq   map[string]uint64

	clockMu sync.Mutex
	clock   time.Time // the IMDS's clock when set; zero: time.Now
}

// now is the IMDS's clock.
func (m *testIMDS) now() time.Time {
	m.clockMu.Lock()
	defer m.clockMu.Unlock()
	if m.clock.IsZero() {
		return time.Now()
	}
	return m.clock
}

// setClock sets the IMDS's clock to at (zero: back to time.Now).
func (m *testIMDS) setClock(at time.Time) {
	m.clockMu.Lock()
	m.clock = at
	m.clockMu.Unlock()
}

func newTestIMDS(t *testing.T) *testIMDS {
	t.Helper()
	m := &testIMDS{t: t, seq: map[string]uint64{}}
	s, err := server.New(server.Options{DataDir: t.TempDir(), Rate: 0, Now: m.now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.AdminHandler())
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	m.srv, m.admin = s, hs.URL
	return m
}

// cli runs the CLI against the IMDS.
func (m *testIMDS) cli(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append(args, "--admin-url", m.admin), strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func (m *testIMDS) mustCLI(stdin string, args ...string) string {
	m.t.Helper()
	code, out, errs := m.cli(stdin, args...)
	if code != 0 {
		m.t.Fatalf("%q: exit %d: %s", args, code, errs)
	}
	return out
}

// postReport posts r from the guest at from, with that guest's next seq,
// the agent version "test" and, unless r has one, the time now; it returns
// the IMDS's answer.
func (m *testIMDS) postReport(from string, r status.Report) *httptest.ResponseRecorder {
	m.t.Helper()
	m.seq[from]++
	r.Seq, r.AgentVersion = m.seq[from], "test"
	if r.Time.IsZero() {
		r.Time = status.Time{Time: time.Now()}
	}
	b, _ := json.Marshal(r)
	req := httptest.NewRequest(http.MethodPost, api.PathStatus, bytes.NewReader(b))
	req.RemoteAddr = from + ":40000"
	req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	rec := httptest.NewRecorder()
	m.srv.GuestHandler().ServeHTTP(rec, req)
	return rec
}

// report posts a status report from the guest at from, the next seq of
// that guest, made at time at.
func (m *testIMDS) report(from string, gen int64, state, errText string, at time.Time) {
	m.t.Helper()
	// The IMDS receives the report at its time: the list's LAST REPORT
	// counts from the receive time (lastSeen), not the guest's clock.
	m.setClock(at)
	rec := m.postReport(from, status.Report{Time: status.Time{Time: at}, Generation: gen, State: state, Error: errText})
	m.setClock(time.Time{})
	if rec.Code != http.StatusNoContent {
		m.t.Fatalf("report from %s: %d %s", from, rec.Code, rec.Body)
	}
}

// awaitParked returns once n admin long-polls are parked (the CLI is
// waiting), polling the metrics: the test then acts knowing the wait is
// underway.
func (m *testIMDS) awaitParked(n int) {
	m.t.Helper()
	want := fmt.Sprintf(`prewarm_imds_parked_long_polls{api="admin"} %d`, n)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get(m.admin + api.PathMetrics)
		if err != nil {
			m.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), want) {
			return
		}
	}
	m.t.Fatalf("no %d parked admin long-polls", n)
}

type result struct {
	code           int
	stdout, stderr string
}

func (m *testIMDS) goCLI(args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		var o, e bytes.Buffer
		code := run(append(args, "--admin-url", m.admin), strings.NewReader(""), &o, &e)
		ch <- result{code, o.String(), e.String()}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the CLI did not return")
		return result{}
	}
}

// closedURL is an admin URL where nothing listens.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// TestExitCodes: every exit code of the admin commands, from a real
// command line against a real server.
func TestExitCodes(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-ok", "--address", "127.0.0.11")
	m.mustCLI(`{"hostname":"ok"}`, "publish", "vm-ok", "-")
	m.report("127.0.0.11", 1, status.StateProvisioned, "", time.Now())
	m.mustCLI("", "register", "vm-bad", "--address", "127.0.0.12")
	m.mustCLI(`{"hostname":"bad"}`, "publish", "vm-bad", "-")
	m.report("127.0.0.12", 1, status.StateFailed, "users: shell /bin/nope does not exist", time.Now())
	m.mustCLI("", "register", "vm-quiet", "--address", "127.0.0.13")
	m.mustCLI(`{"hostname":"quiet"}`, "publish", "vm-quiet", "-")
	m.mustCLI("", "register", "vm-empty", "--address", "127.0.0.14")

	for _, tt := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"status", "vm-ok", "--wait"}, cli.ExitOK, nil},
		{[]string{"get", "vm-ok"}, cli.ExitOK, nil},
		{[]string{"status"}, cli.ExitUsage, []string{"status wants ID"}},
		{[]string{"status", "vm-ok", "--until", "provisioned"}, cli.ExitUsage, []string{"--until goes with --wait"}},
		{[]string{"status", "vm-ok", "--wait", "--until", "ready"}, cli.ExitUsage, []string{`--until "ready"`}},
		{[]string{"status", "vm-ok", "--wait", "--generation", "1", "--published"}, cli.ExitUsage, []string{"generation", "published"}},
		{[]string{"list", "--state", "done"}, cli.ExitUsage, []string{`--state "done"`}},
		{[]string{"publish", "vm-ok"}, cli.ExitUsage, []string{"publish wants ID FILE|-"}},
		{[]string{"publish", "vm-ok", "-", "--if-match", "x"}, cli.ExitUsage, []string{"--if-match"}},
		{[]string{"register", "vm-x", "--label", "novalue"}, cli.ExitUsage, []string{"KEY=VALUE"}},
		{[]string{"frobnicate"}, cli.ExitUsage, nil},
		{[]string{"status", "vm-bad", "--wait"}, cli.ExitGuestFailed, []string{"vm-bad reported failed for generation 1", "users: shell /bin/nope does not exist"}},
		{[]string{"status", "vm-quiet", "--wait", "--timeout", "1s"}, cli.ExitTimeout, []string{"vm-quiet did not report provisioned at generation 1 or later within 1s", "has not reported"}},
		{[]string{"get", "vm-none"}, cli.ExitNotFound, []string{`get vm-none: instance "vm-none" is not registered`, "prewarm-imds list"}},
		{[]string{"status", "vm-none", "--wait"}, cli.ExitNotFound, []string{"vm-none"}},
		{[]string{"status", "vm-empty", "--wait"}, cli.ExitNotFound, []string{"vm-empty has no config published", "publish a document first"}},
		{[]string{"config", "vm-empty"}, cli.ExitNotFound, []string{"no config published"}},
		{[]string{"publish", "vm-ok", "-"}, cli.ExitFailure, []string{"publish to vm-ok", "invalid config"}},
	} {
		code, _, stderr := m.cli(`{"bogus": 1}`, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d; stderr %q", tt.args, code, tt.code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr %q does not say %q", tt.args, stderr, w)
			}
		}
		// No Go error chain: no "GET /v1/..." or "dial tcp" prefixes.
		if strings.Contains(stderr, "/v1/") || strings.Contains(stderr, ": 404 Not Found") {
			t.Errorf("%q: stderr carries the HTTP chain: %q", tt.args, stderr)
		}
	}

	// 5: nothing listens at the admin URL, or at the socket.
	var o, e bytes.Buffer
	if code := run([]string{"list", "--admin-url", closedURL(t)}, strings.NewReader(""), &o, &e); code != cli.ExitUnreachable ||
		!strings.Contains(e.String(), "cannot reach the IMDS admin API") || !strings.Contains(e.String(), "is prewarm-imds serve running") {
		t.Errorf("unreachable URL: exit %d, stderr %q", code, e.String())
	}
	e.Reset()
	if code := run([]string{"get", "vm-ok", "--admin-socket", t.TempDir() + "/none.sock"}, strings.NewReader(""), &o, &e); code != cli.ExitUnreachable {
		t.Errorf("missing socket: exit %d, stderr %q", code, e.String())
	}
	// The environment names the admin API too.
	t.Setenv("PREWARM_IMDS_ADMIN_URL", closedURL(t))
	e.Reset()
	if code := run([]string{"list"}, strings.NewReader(""), &o, &e); code != cli.ExitUnreachable || !strings.Contains(e.String(), strings.TrimPrefix(os.Getenv("PREWARM_IMDS_ADMIN_URL"), "http://")) {
		t.Errorf("PREWARM_IMDS_ADMIN_URL: exit %d, stderr %q", code, e.String())
	}
}

// TestWaitUntil: each --until value ends the wait on the report that
// reaches it, after the wait has started, and not on the reports before.
func TestWaitUntil(t *testing.T) {
	for _, tt := range []struct {
		until   string
		extra   []string
		reports []string // states, at the published generation 2 unless "old:"
		code    int
		last    string
	}{
		{until: "provisioned", reports: []string{"applying", "partial-ready", "provisioned"}, code: cli.ExitOK, last: "provisioned"},
		{until: "provisioned", reports: []string{"old:provisioned", "applying", "failed"}, code: cli.ExitGuestFailed, last: "failed"},
		{until: "partial-ready", reports: []string{"applying", "partial-ready"}, code: cli.ExitOK, last: "partial-ready"},
		{until: "partial-ready", reports: []string{"applying", "provisioned"}, code: cli.ExitOK, last: "provisioned"},
		{until: "failed", reports: []string{"applying", "provisioned", "failed"}, code: cli.ExitOK, last: "failed"},
		{until: "any", reports: []string{"old:applying"}, code: cli.ExitOK, last: "applying"},
		{until: "any", reports: []string{"failed"}, code: cli.ExitGuestFailed, last: "failed"},
		{until: "provisioned", extra: []string{"--generation", "3"}, reports: []string{"provisioned", "applying"}, code: cli.ExitTimeout},
	} {
		t.Run(tt.until+"/"+strings.Join(tt.reports, ","), func(t *testing.T) {
			m := newTestIMDS(t)
			m.mustCLI("", "register", "vm", "--address", "127.0.0.21")
			m.mustCLI(`{"partial":true}`, "publish", "vm", "-")
			m.report("127.0.0.21", 1, status.StatePartialReady, "", time.Now())
			m.mustCLI(`{"hostname":"final"}`, "publish", "vm", "-")
			args := append([]string{"status", "vm", "--wait", "--until", tt.until, "-o", "json"}, tt.extra...)
			if tt.code == cli.ExitTimeout {
				args = append(args, "--timeout", "2s")
			}
			ch := m.goCLI(args...)
			m.awaitParked(1)
			for _, st := range tt.reports {
				gen := int64(2)
				if s, ok := strings.CutPrefix(st, "old:"); ok {
					gen, st = 1, s
				}
				errText := ""
				if st == status.StateFailed {
					errText = "step users failed"
				}
				m.report("127.0.0.21", gen, st, errText, time.Now())
			}
			r := recv(t, ch)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			if tt.code == cli.ExitTimeout {
				if !strings.Contains(r.stderr, "generation 2 applying") {
					t.Errorf("timeout does not name the last report: %q", r.stderr)
				}
				return
			}
			var h api.StatusHistory
			if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || len(h.Reports) == 0 {
				t.Fatalf("output %q: %v", r.stdout, err)
			}
			if got := h.Reports[len(h.Reports)-1].State; got != tt.last {
				t.Errorf("ended on %s, want %s (reports %v)", got, tt.last, h.Reports)
			}
			if tt.code == cli.ExitGuestFailed && !strings.Contains(r.stderr, "step users failed") {
				t.Errorf("the guest's error is not printed: %q", r.stderr)
			}
		})
	}

	// A state already reached ends the wait at once, without a poll; with
	// --generation an older one does not count.
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm", "--address", "127.0.0.22")
	m.mustCLI(`{"hostname":"a"}`, "publish", "vm", "-")
	m.report("127.0.0.22", 1, status.StateProvisioned, "", time.Now())
	if out := m.mustCLI("", "status", "vm", "--wait"); !strings.Contains(out, "provisioned") {
		t.Errorf("already provisioned: %q", out)
	}
	if code, _, _ := m.cli("", "status", "vm", "--wait", "--generation", "2", "--timeout", "1s"); code != cli.ExitTimeout {
		t.Errorf("--generation 2 after generation 1 provisioned: exit %d, want 4", code)
	}
}

// TestListColumnsAndFilters: list's columns, --state, --stale and JSON.
func TestListColumnsAndFilters(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-a", "--address", "127.0.0.31,127.0.0.32")
	m.mustCLI("", "register", "vm-b", "--host-interface", "vnet7", "--address", "127.0.0.33")
	m.mustCLI("", "register", "vm-c", "--address", "127.0.0.34")
	m.mustCLI("", "register", "vm-d", "--address", "127.0.0.35")
	m.mustCLI("", "register", "vm-e", "--address", "127.0.0.36")
	now := time.Now()
	m.setClock(now.Add(-6 * time.Hour)) // published 6 hours ago
	for _, id := range []string{"vm-a", "vm-b", "vm-c", "vm-e"} {
		m.mustCLI(`{"hostname":"h"}`, "publish", id, "-")
	}
	m.mustCLI(`{"hostname":"h2"}`, "publish", "vm-b", "-")
	m.setClock(time.Time{})
	m.report("127.0.0.31", 1, status.StateProvisioned, "", now.Add(-5*time.Hour))
	m.report("127.0.0.33", 1, status.StateFailed, "users: create user <x>: shell /bin/nope does not exist, and a long tail that the table cuts", now.Add(-3*time.Hour))
	m.report("127.0.0.34", 1, status.StateApplying, "", now.Add(-20*time.Minute))

	out := m.mustCLI("", "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("list:\n%s", out)
	}
	header := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(lines[0], "LAST REPORT", "LAST_REPORT"), "LAST ERROR", "LAST_ERROR"))
	if strings.Join(header, " ") != "INSTANCE IDENTITY PUBLISHED REPORTED STATE LAST_REPORT LAST_ERROR" {
		t.Errorf("header %q", lines[0])
	}
	for i, want := range [][]string{
		{"vm-a", "127.0.0.31,127.0.0.32", "1", "1", "provisioned", "5h", "ago", "-"},
		{"vm-b", "vnet7", "127.0.0.33", "2", "1", "failed", "3h", "ago", "users: create user <x>: shell /bin/nope does not exist, and…"},
		{"vm-c", "127.0.0.34", "1", "1", "applying", "20m", "ago", "-"},
		{"vm-d", "127.0.0.35", "-", "-", "none", "-", "-"},
		{"vm-e", "127.0.0.36", "1", "-", "none", "-", "-"},
	} {
		got := lines[i+1]
		if !strings.HasPrefix(got, want[0]+" ") {
			t.Errorf("row %d %q, want %s", i, got, want[0])
			continue
		}
		// The cells appear in order.
		rest := got
		for _, cell := range want {
			j := strings.Index(rest, cell)
			if j < 0 {
				t.Errorf("row %q: no %q in order", got, cell)
				break
			}
			rest = rest[j+len(cell):]
		}
	}

	ids := func(args ...string) string {
		var l api.InstanceList
		if err := json.Unmarshal([]byte(m.mustCLI("", append(args, "-o", "json")...)), &l); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, in := range l.Instances {
			s = append(s, in.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list"}, "vm-a,vm-b,vm-c,vm-d,vm-e"},
		{[]string{"list", "--state", "failed"}, "vm-b"},
		{[]string{"list", "--state", "applying,none"}, "vm-c,vm-d,vm-e"},
		{[]string{"list", "--state", "provisioned", "--state", "failed"}, "vm-a,vm-b"},
		// Stale: not settled on the published generation (vm-b failed an
		// older one, vm-c is applying, vm-e never reported) and silent for
		// the duration; vm-a (provisioned 5h ago) is settled, vm-d has
		// nothing published.
		{[]string{"list", "--stale", "10m"}, "vm-b,vm-c,vm-e"},
		{[]string{"list", "--stale", "1h"}, "vm-b,vm-e"},
		{[]string{"list", "--stale", "1h", "--state", "failed"}, "vm-b"},
		{[]string{"list", "--state", "partial-ready"}, ""},
	} {
		if got := ids(tt.args...); got != tt.want {
			t.Errorf("%q: %s, want %s", tt.args, got, tt.want)
		}
	}
	// Table and JSON agree on the filter; the JSON keeps the full error.
	if out := m.mustCLI("", "list", "--state", "failed", "-o", "json"); !strings.Contains(out, "the table cuts") || !strings.Contains(out, "<x>") {
		t.Errorf("JSON list: %s", out)
	}
	if out := m.mustCLI("", "list", "--state", "provisioned"); strings.Contains(out, "vm-b") || !strings.Contains(out, "vm-a") {
		t.Errorf("list --state provisioned:\n%s", out)
	}

	// A guest whose clock is a day behind: its report, received now, is
	// 0s old and does not make the instance stale; the JSON says when the
	// IMDS received it and when it saw the publish.
	m.mustCLI(`{"hostname":"h"}`, "publish", "vm-d", "-")
	m.seq["127.0.0.35"]++
	r := status.Report{Seq: m.seq["127.0.0.35"], Time: status.Time{Time: now.Add(-24 * time.Hour)}, Generation: 1, State: status.StateApplying, AgentVersion: "test"}
	b, _ := json.Marshal(r)
	req := httptest.NewRequest(http.MethodPost, api.PathStatus, bytes.NewReader(b))
	req.RemoteAddr = "127.0.0.35:40000"
	req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	rec := httptest.NewRecorder()
	m.srv.GuestHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	if got := ids("list", "--stale", "10m"); strings.Contains(got, "vm-d") {
		t.Errorf("--stale 10m lists vm-d, which reported just now with a skewed clock: %s", got)
	}
	var d api.Instance
	if err := json.Unmarshal([]byte(m.mustCLI("", "get", "vm-d", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.LastSeen == nil || time.Since(*d.LastSeen) > time.Minute || d.PublishedAt == nil || time.Since(*d.PublishedAt) > time.Minute {
		t.Errorf("vm-d lastSeen %v publishedAt %v, want both about now", d.LastSeen, d.PublishedAt)
	}
	for _, line := range strings.Split(m.mustCLI("", "list"), "\n") {
		if strings.HasPrefix(line, "vm-d ") && !strings.Contains(line, "s ago") {
			t.Errorf("vm-d's row %q: want an age in seconds (received now)", line)
		}
	}
}

// failingWriter fails the write after the one that holds want, ending
// list --watch (which runs until interrupted or a write fails).
type failingWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

var errEnough = errors.New("enough")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(w.buf.String(), w.want) {
		return 0, errEnough
	}
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestListWatch: list --watch prints the list, then again when a report
// changes it, woken by the admin API's long-poll on the list.
func TestListWatch(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-w", "--address", "127.0.0.41")
	m.mustCLI(`{"hostname":"w"}`, "publish", "vm-w", "-")
	w := &failingWriter{want: "provisioned", seen: make(chan struct{})}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"list", "--watch", "--admin-url", m.admin}, strings.NewReader(""), w, io.Discard)
	}()
	m.awaitParked(1) // the first list is printed and the watch waits
	w.mu.Lock()
	first := w.buf.String()
	w.mu.Unlock()
	if !strings.Contains(first, "vm-w") || !strings.Contains(first, "none") {
		t.Fatalf("first list:\n%s", first)
	}
	m.report("127.0.0.41", 1, status.StateProvisioned, "", time.Now())
	select {
	case <-w.seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("the watch did not redraw on the report:\n%s", w.buf.String())
	}
	// The next change makes the next write fail, which ends the watch.
	m.mustCLI(`{"hostname":"w2"}`, "publish", "vm-w", "-")
	select {
	case code := <-done:
		if code != cli.ExitFailure {
			t.Errorf("watch ended with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not redraw on the publish")
	}
}
