package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/internal/syncbuf"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// waitLimit bounds every event-driven wait of these tests.
const waitLimit = 10 * time.Second

// testIMDS is an IMDS for the agent to talk to, with a recording and
// fault-injecting front: it records every report the IMDS accepted and
// every guest request, and lets a test answer requests itself.
type testIMDS struct {
	t     *testing.T
	URL   string
	srv   *httptest.Server
	inner http.Handler
	pub   func(doc string) int64

	fault atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]

	mu       sync.Mutex
	reports  []status.Report
	resends  int // reports sent again after a cut, answered 2xx
	requests []request
	changed  chan struct{} // closed and replaced on every recorded event
}

type request struct {
	Method, Path string
	Time         time.Time
	Code         int
}

func newTestIMDS(t *testing.T, opts server.Options) *testIMDS {
	m := &testIMDS{t: t, changed: make(chan struct{})}
	m.inner, m.pub = newGuestBackend(t, opts)
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	m.URL = m.srv.URL
	t.Cleanup(m.srv.Close)
	return m
}

// setFault makes f answer requests first; f returns true when it answered.
func (m *testIMDS) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		m.fault.Store(nil)
		return
	}
	m.fault.Store(&f)
}

func (m *testIMDS) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *testIMDS) serve(w http.ResponseWriter, r *http.Request) {
	rec := &codeWriter{ResponseWriter: w, code: 200}
	var body []byte
	if r.Method == http.MethodPost {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	handled := false
	if f := m.fault.Load(); f != nil {
		handled = (*f)(rec, r)
	}
	if !handled {
		m.inner.ServeHTTP(rec, r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, request{r.Method, r.URL.Path, time.Now(), rec.code})
	if !handled && r.Method == http.MethodPost && r.URL.Path == api.PathStatus && rec.code/100 == 2 {
		var rep status.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			m.t.Errorf("accepted report does not decode: %v", err)
		}
		// A link event cuts a report in flight and the agent sends it
		// again: the IMDS takes a resend of the report it stored last
		// (same seq, same time) without storing it twice, and so does
		// this record.
		if n := len(m.reports); n > 0 && m.reports[n-1].Seq == rep.Seq && m.reports[n-1].Time.Equal(rep.Time.Time) {
			m.resends++
		} else {
			m.reports = append(m.reports, rep)
		}
	}
	m.notify()
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(c int) { w.code = c; w.ResponseWriter.WriteHeader(c) }
func (w *codeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// publish publishes doc and returns its generation.
func (m *testIMDS) publish(doc string) int64 { return m.pub(doc) }

// waitFor waits until cond holds for the recorded state.
func (m *testIMDS) waitFor(what string, cond func(reports []status.Report, reqs []request) bool) {
	m.t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ok := cond(m.reports, m.requests)
		ch := m.changed
		m.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			m.t.Fatalf("timed out waiting for %s; reports: %s", what, m.summary())
		}
	}
}

// waitReport waits for a report with the state (and event) at generation gen.
func (m *testIMDS) waitReport(state string, gen int64) status.Report {
	m.t.Helper()
	var got status.Report
	m.waitFor(fmt.Sprintf("%s of generation %d", state, gen), func(rs []status.Report, _ []request) bool {
		for _, r := range rs {
			if r.State == state && r.Generation == gen && r.Event == "" {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

func (m *testIMDS) all() []status.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]status.Report(nil), m.reports...)
}

func (m *testIMDS) reqs() []request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]request(nil), m.requests...)
}

func (m *testIMDS) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return summarize(m.reports)
}

func summarize(rs []status.Report) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "[#%d g%d %s%s] ", r.Seq, r.Generation, r.State, map[bool]string{true: " " + r.Event, false: ""}[r.Event != ""])
	}
	return b.String()
}

// checkSeq asserts the reports carry seq 1, 2, 3... with no gap or repeat.
func checkSeq(t *testing.T, rs []status.Report) {
	t.Helper()
	for i, r := range rs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("report %d has seq %d, want %d: %s", i, r.Seq, i+1, summarize(rs))
		}
	}
}

// fakePlatform records every call and fails or blocks steps on demand.
type fakePlatform struct {
	mu      sync.Mutex
	calls   []string
	fail    map[string]error
	block   map[string]chan struct{} // a step waits for the channel (or ctx)
	entered chan string              // receives a step's name when it starts, if set

	links      chan LinkEvent
	dhcpIfaces []string
	renewals   atomic.Int32
	behind     atomic.Bool // LinksBehind's answer
	// onBehind, if set, runs inside LinksBehind before it answers.
	onBehind  atomic.Pointer[func()]
	sameLease atomic.Bool // a renewal keeps the address it had
}

func newFakePlatform() *fakePlatform {
	return &fakePlatform{fail: map[string]error{}, block: map[string]chan struct{}{}, links: make(chan LinkEvent, 256), dhcpIfaces: []string{"eth0"}}
}

func (f *fakePlatform) platform() Platform {
	return Platform{Links: f, DHCP: f, Hostname: f, Timezone: f, Users: f, Network: f}
}

func (f *fakePlatform) step(ctx context.Context, name, detail string) (StepResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, name+"="+detail)
	err, block, entered := f.fail[name], f.block[name], f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- name
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return StepResult{}, ctx.Err()
		}
	}
	if err != nil {
		return StepResult{}, err
	}
	return StepResult{Changed: true, Actions: []string{"set " + name}}, nil
}

func (f *fakePlatform) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakePlatform) setFail(step string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, step)
	} else {
		f.fail[step] = err
	}
}

func (f *fakePlatform) ApplyHostname(ctx context.Context, h string) (StepResult, error) {
	return f.step(ctx, status.StepHostname, h)
}
func (f *fakePlatform) ApplyTimezone(ctx context.Context, z string) (StepResult, error) {
	return f.step(ctx, status.StepTimezone, z)
}
func (f *fakePlatform) ApplyUsers(ctx context.Context, us []config.User) (StepResult, error) {
	var names []string
	for _, u := range us {
		names = append(names, u.Name)
	}
	return f.step(ctx, status.StepUsers, strings.Join(names, ","))
}
func (f *fakePlatform) ApplyNetwork(ctx context.Context, n *config.Network) (StepResult, error) {
	return f.step(ctx, status.StepNetwork, fmt.Sprint(len(n.Interfaces)))
}
func (f *fakePlatform) WatchLinks(ctx context.Context) (<-chan LinkEvent, error) {
	out := make(chan LinkEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-f.links:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// holdRenewals makes renewals wait until the returned channel is closed,
// and signal on entered when they start.
func (f *fakePlatform) holdRenewals() chan struct{} {
	hold := make(chan struct{})
	f.mu.Lock()
	f.block[renewStep] = hold
	f.entered = make(chan string, 256)
	f.mu.Unlock()
	return hold
}

// syncLinks returns once the agent has handled every link event sent so
// far: it queues two markers (removals of an interface the agent never
// saw) and waits until the forwarder has taken the second, which it does
// only once the agent took the first, so every earlier event was handled.
func (f *fakePlatform) syncLinks(t *testing.T) {
	t.Helper()
	f.links <- LinkEvent{Kind: LinkRemoved, Interface: "sync0"}
	f.links <- LinkEvent{Kind: LinkRemoved, Interface: "sync0"}
	deadline := time.Now().Add(waitLimit)
	for len(f.links) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent does not take link events")
		}
		time.Sleep(time.Millisecond)
	}
}

// LinksBehind implements LinkSettler.
func (f *fakePlatform) LinksBehind(context.Context) (bool, error) {
	if fn := f.onBehind.Load(); fn != nil {
		(*fn)()
	}
	return f.behind.Load(), nil
}

// listDHCP is the name under which setFail fails DHCPInterfaces.
const listDHCP = "list-dhcp"

func (f *fakePlatform) DHCPInterfaces(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[listDHCP]; err != nil {
		return nil, err
	}
	return f.dhcpIfaces, nil
}

// renewStep is the name under which block and entered hold and signal a
// renewal.
const renewStep = "renew"

func (f *fakePlatform) RenewDHCP(ctx context.Context, iface string) (Lease, error) {
	f.renewals.Add(1)
	f.mu.Lock()
	f.calls = append(f.calls, "renew="+iface)
	block, entered, fail := f.block[renewStep], f.entered, f.fail[renewStep]
	f.mu.Unlock()
	if entered != nil {
		entered <- renewStep
	}
	if fail != nil {
		return Lease{Interface: iface, Client: "fake"}, fail
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		}
	}
	l := Lease{Interface: iface, Client: "fake", Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}, Previous: []netip.Prefix{netip.MustParsePrefix("192.168.7.5/24")}}
	if f.sameLease.Load() {
		l.Previous = l.Addresses
	}
	return l, nil
}

// harness runs one agent against a testIMDS and a fakePlatform, in
// directories that outlive a restart.
type harness struct {
	t                        *testing.T
	imds                     *testIMDS
	plat                     *fakePlatform
	stateDir, logDir, runDir string
	logs                     *syncbuf.Buffer
	tweak                    func(*Options)
	agent                    *Agent // the one started last

	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T) *harness {
	return newHarnessWith(t, server.Options{})
}

// newHarnessWith is newHarness with options for the IMDS.
func newHarnessWith(t *testing.T, opts server.Options) *harness {
	d := t.TempDir()
	return &harness{t: t, imds: newTestIMDS(t, opts), plat: newFakePlatform(),
		stateDir: d + "/state", logDir: d + "/log", runDir: d + "/run", logs: &syncbuf.Buffer{}}
}

func (h *harness) options() Options {
	o := Options{
		IMDSURL: h.imds.URL, StateDir: h.stateDir, LogDir: h.logDir, RunDir: h.runDir,
		Platform:     h.plat.platform(),
		Logger:       slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, tWriter{h.t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
		WaitTimeout:  5 * time.Second,
		PollInterval: 100 * time.Millisecond,
		BackoffBase:  10 * time.Millisecond,
		BackoffMax:   200 * time.Millisecond,
	}
	if h.tweak != nil {
		h.tweak(&o)
	}
	return o
}

func (h *harness) start() {
	h.t.Helper()
	a, err := New(h.options())
	if err != nil {
		h.t.Fatal(err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop stops the agent and waits for it, bounded.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("agent: %v", err)
		}
	case <-time.After(waitLimit):
		h.t.Fatal("agent did not stop")
	}
	h.cancel = nil
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// freePort returns a loopback address nothing listens on (yet).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
