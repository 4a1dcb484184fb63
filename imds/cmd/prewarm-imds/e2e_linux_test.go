package main

// End-to-end tests against the real prewarm-imds binary, built once in
// TestMain, on loopback. Linux only: they use the whole of 127.0.0.0/8 as
// guest source addresses.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "prewarm-imds-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Both binaries, as make build does: the lean prewarm-imds execs
	// prewarm-imds-etcd (beside it) for --store etcd.
	binPath = filepath.Join(dir, "prewarm-imds")
	for _, b := range []struct{ out, tags string }{{binPath, ""}, {filepath.Join(dir, etcdBinary), "etcd"}} {
		build := exec.Command("go", "build", "-tags", b.tags, "-o", b.out, ".")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.out+":", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logWriter copies a process's output to t.Log, line by line, until the
// test ends, and keeps it for assertions.
type logWriter struct {
	mu   sync.Mutex
	t    *testing.T
	buf  bytes.Buffer
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// imds is one running prewarm-imds serve.
type imds struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	socket  string
	guest   string // host:port of the guest listener
	args    []string
	out     *logWriter
	exited  chan struct{}
	admin   *client.Client
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startIMDS runs prewarm-imds serve on a fresh data dir, guest port and
// admin socket (or those of base, to restart it) and waits until it
// answers.
func startIMDS(t *testing.T, base *imds, extra ...string) *imds {
	t.Helper()
	p := &imds{t: t}
	if base != nil {
		p.dataDir, p.socket, p.guest, p.args = base.dataDir, base.socket, base.guest, base.args
	} else {
		dir := t.TempDir()
		p.dataDir = filepath.Join(dir, "data")
		p.socket = filepath.Join(dir, "run", "admin.sock")
		p.guest = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p.args = append([]string{"serve", "--listen", p.guest, "--admin-socket", p.socket, "--data-dir", p.dataDir, "--log-level", "debug"}, extra...)
	}
	p.out = &logWriter{t: t}
	p.cmd = exec.Command(binPath, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		p.out.mu.Lock()
		p.out.done = true
		p.out.mu.Unlock()
	})
	p.admin = client.NewUnix(p.socket)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := p.admin.Healthz(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-p.exited:
			t.Fatalf("prewarm-imds exited early: %v", p.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prewarm-imds not ready after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// stop sends sig and waits (bounded) for the process to exit, killing it
// if it does not.
func (p *imds) stop(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Errorf("prewarm-imds (pid %d) did not exit after %v; killing it", p.cmd.Process.Pid, sig)
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// runCLI runs one CLI command against p's admin socket.
func (p *imds) runCLI(stdin string, args ...string) (string, error) {
	cmd := exec.Command(binPath, append(args, "--admin-socket", p.socket)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("prewarm-imds %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (p *imds) mustCLI(stdin string, args ...string) string {
	p.t.Helper()
	out, err := p.runCLI(stdin, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// guestClient makes requests from the source address src.
func guestClient(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second}
}

type answer struct {
	code int
	hdr  http.Header
	body string
	took time.Duration
}

// guestGet sends GET path from src with Metadata: true and extra headers.
func (p *imds) guestDo(src, method, path, body string, hdr ...string) (answer, error) {
	r, err := http.NewRequest(method, "http://"+p.guest+path, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	r.Header.Set("Metadata", "true")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := guestClient(src).Do(r)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b), time.Since(start)}, nil
}

func (p *imds) mustGuest(src, method, path, body string, hdr ...string) answer {
	p.t.Helper()
	a, err := p.guestDo(src, method, path, body, hdr...)
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestE2EIsolation(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "0")
	srcs := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	for i, src := range srcs {
		id := fmt.Sprintf("vm-%d", i)
		p.mustCLI("", "register", id, "--address", src, "--label", "n="+strconv.Itoa(i))
		gen := p.mustCLI(fmt.Sprintf(`{"hostname":"host-%d","users":[{"name":"u%d","password":"pw-%d"}]}`, i, i, i), "publish", id, "-")
		if strings.TrimSpace(gen) != "1" {
			t.Fatalf("publish printed %q", gen)
		}
	}
	for i, src := range srcs {
		a := p.mustGuest(src, "GET", api.PathConfig, "")
		if a.code != 200 || !strings.Contains(a.body, fmt.Sprintf(`"instanceId":"vm-%d"`, i)) || !strings.Contains(a.body, fmt.Sprintf(`"hostname":"host-%d"`, i)) {
			t.Fatalf("%s got %d %s", src, a.code, a.body)
		}
		for j := range srcs {
			if j != i && strings.Contains(a.body, fmt.Sprintf("host-%d", j)) {
				t.Fatalf("%s sees vm-%d's document", src, j)
			}
		}
		// The guest gets its own password; the admin read-back never does.
		if !strings.Contains(a.body, fmt.Sprintf(`"password":"pw-%d"`, i)) {
			t.Fatalf("guest document lacks its password: %s", a.body)
		}
		inst := p.mustGuest(src, "GET", api.PathInstance, "")
		if !strings.Contains(inst.body, fmt.Sprintf(`{"instanceId":"vm-%d","addresses":["%s"]}`, i, src)) {
			t.Fatalf("instance: %s", inst.body)
		}
	}
	if a := p.mustGuest("127.0.0.14", "GET", api.PathConfig, ""); a.code != 404 || !strings.Contains(a.body, "unknown instance") {
		t.Fatalf("unregistered source: %d %s", a.code, a.body)
	}
	if a := p.mustGuest("127.0.0.14", "GET", api.PathConfig, "", "X-Forwarded-For", "127.0.0.11"); a.code != 403 {
		t.Fatalf("spoof via X-Forwarded-For: %d %s", a.code, a.body)
	}
	// A report from one instance lands in its history only.
	rep := `{"seq":1,"time":"2026-11-21T10:00:00Z","generation":1,"state":"provisioned","error":"","agentVersion":"t","event":""}`
	if a := p.mustGuest("127.0.0.12", "POST", api.PathStatus, rep); a.code != 204 {
		t.Fatalf("status: %d %s", a.code, a.body)
	}
	for i := range srcs {
		h, err := p.admin.Status(ctx(t), fmt.Sprintf("vm-%d", i), 0, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[i == 1]; len(h.Reports) != want {
			t.Fatalf("vm-%d has %d reports, want %d", i, len(h.Reports), want)
		}
	}
	out := p.mustCLI("", "config", "vm-0")
	if strings.Contains(out, "pw-0") || !strings.Contains(out, `"password": "REDACTED"`) {
		t.Fatalf("config read-back not redacted: %s", out)
	}
	list := p.mustCLI("", "list")
	if !strings.Contains(list, "vm-1") || !strings.Contains(list, "provisioned") {
		t.Fatalf("list:\n%s", list)
	}
}

func TestE2EDurabilityAcrossSIGKILL(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "0")
	p.mustCLI("", "register", "vm-d", "--address", "127.0.0.21")
	p.mustCLI(`{"partial":true}`, "publish", "vm-d", "-")
	gen := strings.TrimSpace(p.mustCLI(`{"hostname":"durable"}`, "publish", "vm-d", "-"))
	// Kill the moment the publish is acknowledged: no chance to flush.
	p.stop(syscall.SIGKILL)
	if gen != "2" {
		t.Fatalf("generation %s", gen)
	}
	if _, err := os.Stat(p.socket); err != nil {
		t.Fatalf("expected a stale socket after SIGKILL: %v", err)
	}
	q := startIMDS(t, p) // replaces the stale socket
	a := q.mustGuest("127.0.0.21", "GET", api.PathConfig, "")
	if a.code != 200 || genTag(a.hdr.Get("ETag")) != `"2"` || !strings.Contains(a.body, "durable") {
		t.Fatalf("after restart: %d %s %s", a.code, a.hdr.Get("ETag"), a.body)
	}
	// Generations never go back, even after delete and re-registration
	// and another crash.
	q.mustCLI("", "delete", "vm-d")
	q.mustCLI("", "register", "vm-d", "--address", "127.0.0.21")
	q.stop(syscall.SIGKILL)
	r := startIMDS(t, p)
	if gen := strings.TrimSpace(r.mustCLI(`{}`, "publish", "vm-d", "-", "--if-match", "0")); gen != "3" {
		t.Fatalf("generation after delete+re-register+restart: %s, want 3", gen)
	}
	// A live server's socket is refused.
	dup := exec.Command(binPath, "serve", "--listen", "", "--admin-socket", p.socket, "--data-dir", t.TempDir())
	out, err := dup.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by a live server") {
		t.Fatalf("second server on a live socket: %v\n%s", err, out)
	}
	if err := r.admin.Healthz(ctx(t)); err != nil {
		t.Fatalf("first server hurt by the second: %v", err)
	}
}

func TestE2EPublishDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("vm-early.json", `{"addresses":["127.0.0.31"],"config":{"hostname":"early"}}`)
	p := startIMDS(t, nil, "--publish-dir", dir)
	if a := p.mustGuest("127.0.0.31", "GET", api.PathConfig, ""); a.code != 200 || !strings.Contains(a.body, "early") {
		t.Fatalf("file present at start: %d %s", a.code, a.body)
	}
	// A long-poll parked before the file arrives is answered by it.
	type res struct {
		a   answer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		a, err := p.guestDo("127.0.0.31", "GET", api.PathConfig+"?wait=true&timeout=10", "", "If-None-Match", `"1"`)
		ch <- res{a, err}
	}()
	time.Sleep(100 * time.Millisecond)
	write("vm-early.json", `{"config":{"hostname":"later"}}`)
	write("vm-bad.json", `{"addresses":["127.0.0.31"],"config":{"hostname":"x"}}`)
	select {
	case r := <-ch:
		if r.err != nil || r.a.code != 200 || !strings.Contains(r.a.body, "later") || genTag(r.a.hdr.Get("ETag")) != `"2"` {
			t.Fatalf("%+v %v", r.a, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll not answered by a publish-dir file")
	}
	errFile := filepath.Join(dir, "rejected", "vm-bad.json.error")
	var b []byte
	for i := 0; i < 200; i++ {
		if b, _ = os.ReadFile(errFile); len(b) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e.Error, `address 127.0.0.31 belongs to instance "vm-early"`) {
		t.Fatalf("rejection: %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "done", "vm-early.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.admin.Instance(ctx(t), "vm-bad"); client.StatusCode(err) != 404 {
		t.Fatalf("rejected file registered its instance: %v", err)
	}
}

func TestE2ERateLimit(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "1", "--burst", "3")
	p.mustCLI("", "register", "vm-r", "--address", "127.0.0.41")
	p.mustCLI("", "register", "vm-s", "--address", "127.0.0.42")
	var last answer
	for i := 0; i < 4; i++ {
		last = p.mustGuest("127.0.0.41", "GET", api.PathInstance, "")
	}
	if last.code != 429 {
		t.Fatalf("4th request in a burst of 3: %d", last.code)
	}
	ra, err := strconv.Atoi(last.hdr.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", last.hdr.Get("Retry-After"))
	}
	// Another instance has its own bucket; unknown callers spend nothing.
	if a := p.mustGuest("127.0.0.42", "GET", api.PathInstance, ""); a.code != 200 {
		t.Fatalf("other instance: %d", a.code)
	}
	time.Sleep(time.Duration(ra) * time.Second)
	if a := p.mustGuest("127.0.0.41", "GET", api.PathInstance, ""); a.code != 200 {
		t.Fatalf("after Retry-After: %d %s", a.code, a.body)
	}
	m := p.mustGuestMetrics()
	if !strings.Contains(m, "prewarm_imds_rate_limited_total 1") {
		t.Fatalf("metrics lack the 429:\n%s", m)
	}
}

func (p *imds) mustGuestMetrics() string {
	p.t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", p.socket)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://x/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestE2ELongPoll(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "0")
	p.mustCLI("", "register", "vm-l", "--address", "127.0.0.51")
	t.Run("304 on timeout", func(t *testing.T) {
		a := p.mustGuest("127.0.0.51", "GET", api.PathConfig+"?wait=true&timeout=0.5", "")
		if a.code != 304 || a.took < 500*time.Millisecond || a.took > 3*time.Second {
			t.Fatalf("%d after %v", a.code, a.took)
		}
	})
	t.Run("woken by publish", func(t *testing.T) {
		ch := make(chan answer, 1)
		go func() {
			a, _ := p.guestDo("127.0.0.51", "GET", api.PathConfig+"?wait=true&timeout=20", "")
			ch <- a
		}()
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		p.mustCLI(`{"partial":true}`, "publish", "vm-l", "-")
		select {
		case a := <-ch:
			if a.code != 200 || genTag(a.hdr.Get("ETag")) != `"1"` {
				t.Fatalf("%d %s", a.code, a.body)
			}
			t.Logf("answered %v after the CLI started publishing", time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatal("not woken")
		}
	})
	t.Run("status wait via CLI", func(t *testing.T) {
		ch := make(chan string, 1)
		go func() {
			out, err := p.runCLI("", "status", "vm-l", "--wait", "--until", "partial-ready", "--timeout", "20s", "-o", "json")
			if err != nil {
				out = err.Error()
			}
			ch <- out
		}()
		time.Sleep(200 * time.Millisecond)
		rep := `{"seq":1,"time":"2026-11-21T10:00:00Z","generation":1,"state":"partial-ready","error":"","agentVersion":"t","event":""}`
		if a := p.mustGuest("127.0.0.51", "POST", api.PathStatus, rep); a.code != 204 {
			t.Fatal(a.code)
		}
		select {
		case out := <-ch:
			if !strings.Contains(out, `"state": "partial-ready"`) {
				t.Fatalf("status --wait printed %s", out)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("status --wait not woken")
		}
	})
}

func TestE2EShutdownAnswersParkedPolls(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "0", "--log-format", "json")
	const n = 5
	for i := 0; i < n; i++ {
		p.mustCLI("", "register", fmt.Sprintf("vm-%d", i), "--address", fmt.Sprintf("127.0.0.%d", 61+i))
	}
	ch := make(chan answer, n)
	for i := 0; i < n; i++ {
		go func() {
			a, err := p.guestDo(fmt.Sprintf("127.0.0.%d", 61+i), "GET", api.PathConfig+"?wait=true&timeout=60", "")
			if err != nil {
				a.code = -1
				a.body = err.Error()
			}
			ch <- a
		}()
	}
	// Wait until all are parked (the gauge says so).
	for i := 0; ; i++ {
		if strings.Contains(p.mustGuestMetrics(), fmt.Sprintf(`prewarm_imds_parked_long_polls{api="guest"} %d`, n)) {
			break
		}
		if i > 200 {
			t.Fatal("polls never parked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < n; i++ {
		select {
		case a := <-ch:
			if a.code != 304 {
				t.Fatalf("parked poll answered %d %s", a.code, a.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("parked poll not answered at shutdown")
		}
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	t.Logf("all %d parked polls answered and the process exited %v after SIGTERM", n, time.Since(start))
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("exit status %v", p.cmd.ProcessState)
	}
	if _, err := os.Stat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after a clean shutdown: %v", err)
	}
	// JSON logs: every line is an object.
	for _, line := range strings.Split(strings.TrimSpace(p.out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
	}
}

func TestE2EAdminTCPToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	const secret = "s3cret-token-of-at-least-32-bytes"
	os.WriteFile(tok, []byte(secret+"\n"), 0o600)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startIMDS(t, nil, "--admin-listen", addr, "--admin-token-file", tok)
	if _, err := client.NewHTTP("http://" + addr).List(ctx(t)); client.StatusCode(err) != 401 {
		t.Fatalf("without token: %v", err)
	}
	if _, err := client.NewHTTP("http://"+addr, client.WithToken("wrong")).List(ctx(t)); client.StatusCode(err) != 401 {
		t.Fatalf("wrong token: %v", err)
	}
	c := client.NewHTTP("http://"+addr, client.WithToken(secret))
	if _, err := c.Register(ctx(t), "vm-t", api.Registration{Addresses: []string{"127.0.0.71"}}); err != nil {
		t.Fatal(err)
	}
	if g, err := c.PublishIfMatch(ctx(t), "vm-t", []byte(`{}`), 0); err != nil || g != 1 {
		t.Fatalf("%d %v", g, err)
	}
	if _, err := c.PublishIfMatch(ctx(t), "vm-t", []byte(`{}`), 0); client.StatusCode(err) != 412 {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, err := c.Register(ctx(t), "vm-u", api.Registration{Addresses: []string{"127.0.0.71"}}); client.StatusCode(err) != 409 {
		t.Fatalf("address conflict: %v", err)
	}
	out := p.mustCLI("", "list", "--json")
	if !strings.Contains(out, `"id": "vm-t"`) {
		t.Fatalf("list --json: %s", out)
	}
	// CLI usage errors exit 2 with a message.
	if _, err := p.runCLI("", "publish", "vm-t"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("publish without FILE: %v", err)
	}
	if _, err := p.runCLI(`{"bogus":1}`, "publish", "vm-t", "-"); err == nil || !strings.Contains(err.Error(), "invalid config") {
		t.Fatalf("invalid config via CLI: %v", err)
	}
}

// TestE2ECloudDialects reads the same registry through the EC2 (IMDSv2
// token flow), GCE and Azure dialects of the real binary.
func TestE2ECloudDialects(t *testing.T) {
	p := startIMDS(t, nil, "--rate", "0", "--ec2-tokens", "required")
	for i, src := range []string{"127.0.0.81", "127.0.0.82"} {
		id := fmt.Sprintf("vm-%d", i)
		p.mustCLI("", "register", id, "--address", src)
		p.mustCLI(fmt.Sprintf(`{"hostname":"cloud-%d"}`, i), "publish", id, "-")
	}
	for i, src := range []string{"127.0.0.81", "127.0.0.82"} {
		tok := p.rawDo(src, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60")
		if tok.code != 200 || tok.body == "" {
			t.Fatalf("token from %s: %d %q", src, tok.code, tok.body)
		}
		if a := p.rawDo(src, "GET", "/latest/meta-data/instance-id"); a.code != 401 {
			t.Fatalf("IMDSv1 with tokens required: %d %q", a.code, a.body)
		}
		a := p.rawDo(src, "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok.body)
		if a.code != 200 || a.body != fmt.Sprintf("vm-%d", i) {
			t.Fatalf("EC2 instance-id from %s: %d %q", src, a.code, a.body)
		}
		g := p.rawDo(src, "GET", "/computeMetadata/v1/instance/hostname", "Metadata-Flavor", "Google")
		if g.code != 200 || !strings.Contains(g.body, fmt.Sprintf("cloud-%d", i)) {
			t.Fatalf("GCE hostname from %s: %d %q", src, g.code, g.body)
		}
		z := p.rawDo(src, "GET", "/metadata/instance?api-version=2021-02-01", "Metadata", "true")
		if z.code != 200 || !strings.Contains(z.body, fmt.Sprintf(`"vm-%d"`, i)) {
			t.Fatalf("Azure from %s: %d %q", src, z.code, z.body)
		}
	}
	// A token is bound to the instance that asked for it.
	tok := p.rawDo("127.0.0.81", "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60")
	if a := p.rawDo("127.0.0.82", "GET", "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token", tok.body); a.code != 401 {
		t.Fatalf("vm-0's token used by vm-1: %d %q", a.code, a.body)
	}
	// --dialects native turns the others off.
	q := startIMDS(t, nil, "--rate", "0", "--dialects", "native")
	q.mustCLI("", "register", "vm-n", "--address", "127.0.0.83")
	if a := q.rawDo("127.0.0.83", "GET", "/latest/meta-data/instance-id", "Metadata", "true"); a.code != 404 || !strings.Contains(a.body, "no such path") {
		t.Fatalf("EC2 path with native only: %d %q", a.code, a.body)
	}
}

// rawDo sends a request from src without the Metadata header unless given.
func (p *imds) rawDo(src, method, path string, hdr ...string) answer {
	p.t.Helper()
	r, err := http.NewRequest(method, "http://"+p.guest+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := guestClient(src).Do(r)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, hdr: resp.Header, body: string(b)}
}

// genTag is the generation-only form of a guest ETag: "4" for
// "4.9f86d081884c7d65"; a tag not of that form is returned as it is, so a
// comparison with it fails.
func genTag(tag string) string {
	g, e, ok := strings.Cut(strings.Trim(tag, `"`), ".")
	if !ok || len(e) != 16 || strings.Trim(e, "0123456789abcdef") != "" {
		return tag
	}
	return `"` + g + `"`
}
