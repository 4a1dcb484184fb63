package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/internal/syncbuf"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// postReport sends a status report of the guest at from through h.
func postReport(t testing.TB, h http.Handler, from string, r status.Report) {
	t.Helper()
	if r.Time.IsZero() {
		r.Time = status.Time{Time: time.Now()}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(h, req{method: "POST", path: api.PathStatus, from: from, hdr: md, body: string(b)}); rec.Code != http.StatusNoContent {
		t.Fatalf("report %+v: %d %s", r, rec.Code, rec.Body)
	}
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const hostileText = `<script>alert("x")</script><b>bold</b> & 'q'`

func TestFleetPage(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}, HostInterface: "vnet1", Labels: map[string]string{"pool": hostileText}})
	mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"10.0.0.2"}})
	mustPublish(t, s, "vm-1", `{"partial":true,"hostname":"warm-1"}`)
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 1, Generation: 1, State: status.StateFailed, Error: hostileText})

	rec := do(s.AdminHandler(), req{path: "/ui/"})
	if rec.Code != 200 {
		t.Fatalf("GET /ui/: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`data-instance="vm-1" data-state="failed"`, `data-instance="vm-2" data-state="none"`,
		`<td class="hostname">warm-1</td>`, `<span class="partial">partial</span>`,
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &#39;q&#39;`,
		`<a href="./instances/vm-1">vm-1</a>`, `10.0.0.1 · <span class="iface">vnet1</span>`,
		`<noscript><meta http-equiv="refresh" content="10"></noscript>`, `data-events="events"`,
		`2 instances: <a href="./?state=none" class="state-none">1 none</a> <a href="./?state=failed" class="state-failed">1 failed</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<b>bold") {
		t.Errorf("hostile text unescaped:\n%s", body)
	}

	// Filters, on the page and its stream's address.
	rec = do(s.AdminHandler(), req{path: "/ui/?state=none"})
	if b := rec.Body.String(); rec.Code != 200 || strings.Contains(b, `data-instance="vm-1"`) || !strings.Contains(b, `data-instance="vm-2"`) || !strings.Contains(b, `data-events="events?state=none"`) || !strings.Contains(b, "1 match") {
		t.Errorf("?state=none: %d\n%s", rec.Code, b)
	}
	rec = do(s.AdminHandler(), req{path: "/ui/?stale=1"})
	if b := rec.Body.String(); rec.Code != 200 || strings.Contains(b, `data-instance=`) || !strings.Contains(b, "no instance matches the filter") {
		t.Errorf("?stale=1: %d\n%s", rec.Code, b)
	}
	for _, bad := range []string{"/ui/?state=done", "/ui/?stale=maybe", "/ui/events?state=done"} {
		rec = do(s.AdminHandler(), req{path: bad})
		if e := errBody(t, rec); rec.Code != 400 || !strings.Contains(e.Error, "query parameter") {
			t.Errorf("%s: %d %q", bad, rec.Code, e.Error)
		}
	}

	// A long error is cut in the fleet's row, whole on the instance's page.
	long := strings.Repeat("é", 1000)
	postReport(t, s.GuestHandler(), "10.0.0.2", status.Report{Seq: 1, State: status.StateFailed, Error: long})
	b := do(s.AdminHandler(), req{path: "/ui/"}).Body.String()
	if !strings.Contains(b, `<td class="error">`+strings.Repeat("é", uiMaxError/2)+`…</td>`) {
		t.Errorf("the long error is not cut at %d bytes", uiMaxError)
	}
	if b := do(s.AdminHandler(), req{path: "/ui/instances/vm-2"}).Body.String(); !strings.Contains(b, long) {
		t.Errorf("the instance page does not show the error whole")
	}

	// The instance's page and its history.
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 2, Generation: 1, State: status.StatePartialReady,
		Steps: []status.Step{{Name: "hostname", OK: true, MS: 7}, {Name: "network", OK: false, MS: 30, Error: "boom"}}})
	rec = do(s.AdminHandler(), req{path: "/ui/instances/vm-1"})
	b = rec.Body.String()
	if rec.Code != 200 || !strings.Contains(b, `data-seq="2"`) || !strings.Contains(b, `data-seq="1"`) || strings.Index(b, `data-seq="2"`) > strings.Index(b, `data-seq="1"`) ||
		!strings.Contains(b, `<span class="step failed" title="boom">network 30</span>`) || !strings.Contains(b, `generation 1 (partial), hostname warm-1`) ||
		!strings.Contains(b, `href="../static/ui.css"`) || !strings.Contains(b, `data-events="vm-1/events"`) || strings.Contains(b, "<script>alert") {
		t.Errorf("instance page: %d\n%s", rec.Code, b)
	}
	rec = do(s.AdminHandler(), req{path: "/ui/instances/vm-9"})
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), "instance vm-9 is not registered") {
		t.Errorf("unknown instance: %d\n%s", rec.Code, rec.Body)
	}
	rec = do(s.AdminHandler(), req{path: "/ui/instances/-x"})
	if rec.Code != 400 {
		t.Errorf("bad id: %d", rec.Code)
	}

	// Static files, and nothing else under /ui/static/.
	for path, want := range map[string]string{"/ui/static/ui.js": "EventSource", "/ui/static/ui.css": "table"} {
		rec = do(s.AdminHandler(), req{path: path})
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	for _, p := range []string{"/ui/static/ui.tmpl", "/ui/static/", "/ui/nothing"} {
		if rec = do(s.AdminHandler(), req{path: p}); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
	if rec = do(s.AdminHandler(), req{path: "/ui"}); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "ui/" {
		t.Errorf("/ui: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec = do(s.AdminHandler(), req{method: "POST", path: "/ui/"}); rec.Code != 405 {
		t.Errorf("POST /ui/: %d", rec.Code)
	}
}

// The guest listener never serves the fleet page, whoever asks: a
// registered guest, an unknown source.
func TestFleetPageNotOnGuestListener(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	ts := httptest.NewServer(s.GuestHandler())
	defer ts.Close()
	for _, p := range []string{"/ui/", "/ui", "/ui/events", "/ui/instances/vm-1", "/ui/static/ui.js"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || resp.StatusCode/100 == 3 || strings.Contains(b.String(), "<html") || strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
			t.Errorf("guest listener %s: %d %s\n%s", p, resp.StatusCode, resp.Header.Get("Content-Type"), b.String())
		}
	}
}

// sseReader reads the "update" events of a fleet page stream.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

// next returns the next update event's data.
func (r *sseReader) next() string {
	r.t.Helper()
	var data []string
	event := ""
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if event == "update" {
				return strings.Join(data, "\n")
			}
			event, data = "", nil
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

// until reads updates until one contains want (bounded: the test's
// context ends the stream).
func (r *sseReader) until(want string) string {
	r.t.Helper()
	for i := 0; i < 100; i++ {
		if d := r.next(); strings.Contains(d, want) {
			return d
		}
	}
	r.t.Fatalf("no update with %q in 100 events", want)
	return ""
}

func openStream(t *testing.T, ctx context.Context, url string) *sseReader {
	t.Helper()
	rq, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("stream %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sseReader{t: t, br: bufio.NewReader(resp.Body)}
}

func TestFleetPageStream(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	ts := httptest.NewServer(s.AdminHandler())
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	fl := openStream(t, ctx, ts.URL+"/ui/events")
	one := openStream(t, ctx, ts.URL+"/ui/instances/vm-1/events")
	filtered := openStream(t, ctx, ts.URL+"/ui/events?state=provisioned")
	if d := fl.next(); !strings.Contains(d, `data-instance="vm-1" data-state="none"`) {
		t.Fatalf("first update: %s", d)
	}
	if d := one.next(); !strings.Contains(d, "no report yet") {
		t.Fatalf("instance's first update: %s", d)
	}
	if d := filtered.next(); !strings.Contains(d, "no instance matches the filter") {
		t.Fatalf("filtered first update: %s", d)
	}

	mustPublish(t, s, "vm-1", `{"partial":true}`)
	fl.until(`<td class="published">1 <span class="partial">partial</span></td>`)
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 1, Generation: 1, State: status.StatePartialReady})
	fl.until(`data-state="partial-ready"`)
	one.until(`data-seq="1"`)
	mustPublish(t, s, "vm-1", `{"hostname":"final"}`)
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 2, Generation: 2, State: status.StateProvisioned, Error: "a\nb"})
	d := fl.until(`data-state="provisioned"`)
	if !strings.Contains(d, "<td class=\"error\">a\nb</td>") {
		t.Errorf("a multi-line error does not come back whole: %s", d)
	}
	filtered.until(`data-instance="vm-1" data-state="provisioned"`)
	one.until(`data-seq="2"`)

	if err := s.Delete(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	one.until("is not registered (any more)")
	fl.until("no instance is registered")

	// Shutdown ends the streams.
	go s.Shutdown(context.Background())
	for _, r := range []*sseReader{fl, one, filtered} {
		for i := 0; ; i++ {
			if _, err := r.br.ReadString('\n'); err != nil {
				break
			}
			if i > 1000 {
				t.Fatal("a stream goes on after Shutdown")
			}
		}
	}
}

func TestSSEEvent(t *testing.T) {
	got := string(sseEvent("update", []byte("a\r\nb\rc\n\nd")))
	want := "event: update\ndata: a\ndata: b\ndata: c\ndata: \ndata: d\n\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 59 * time.Second: "59s", 61 * time.Second: "1m01s", 3599 * time.Second: "59m59s",
		3600 * time.Second: "1h00m", 47*time.Hour + 59*time.Minute: "47h59m", 50 * time.Hour: "2d02h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

// logBuffer collects log lines for a test.
type logBuffer struct{ syncbuf.Buffer }

// lines returns the JSON log lines with msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	var out []map[string]any
	for _, ln := range strings.Split(l.String(), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestFleetMetricsAndReportLog(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	logs := &logBuffer{}
	s := newTestServer(t, Options{
		Now: clock.Now, StaleAfter: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	g := s.GuestHandler()
	for i := 1; i <= 3; i++ {
		mustRegister(t, s, fmt.Sprintf("vm-%d", i), api.Registration{Addresses: []string{fmt.Sprintf("10.0.0.%d", i)}})
	}
	byState := func(state string) float64 {
		t.Helper()
		return gathered(t, s, "prewarm_imds_instances_by_state", map[string]string{"state": state})
	}
	stale := func() float64 { t.Helper(); return gathered(t, s, "prewarm_imds_stale_instances", nil) }
	if byState("none") != 3 || byState("provisioned") != 0 || stale() != 0 {
		t.Fatalf("at start: none %v provisioned %v stale %v", byState("none"), byState("provisioned"), stale())
	}

	// vm-1: published, partial-ready, final published, provisioned 4.5 s later.
	mustPublish(t, s, "vm-1", `{"partial":true}`)
	clock.Add(500 * time.Millisecond)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 1, Generation: 1, State: status.StatePartialReady})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	clock.Add(2 * time.Second)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 2, Generation: 2, State: status.StateApplying})
	clock.Add(2500 * time.Millisecond)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 3, Generation: 2, State: status.StateProvisioned,
		Steps: []status.Step{{Name: "hostname", OK: true, MS: 12}, {Name: "users", OK: true, MS: 30}, {Name: "<evil key>", OK: true, MS: 1}}})
	// A later event of the same state is no change of state, and no
	// second observation.
	postReport(t, g, "10.0.0.1", status.Report{Seq: 4, Generation: 2, State: status.StateProvisioned, Event: status.EventDHCPRenewed})

	// vm-2: published, never reports; vm-3: reports without a publish.
	mustPublish(t, s, "vm-2", `{"hostname":"b"}`)
	postReport(t, g, "10.0.0.3", status.Report{Seq: 1, State: status.StateWaiting})

	if byState("provisioned") != 1 || byState("none") != 1 || byState("waiting") != 1 || byState("failed") != 0 {
		t.Errorf("by state: provisioned %v none %v waiting %v failed %v", byState("provisioned"), byState("none"), byState("waiting"), byState("failed"))
	}
	if n := gathered(t, s, "prewarm_imds_status_reports_total", map[string]string{"state": "provisioned"}); n != 2 {
		t.Errorf("provisioned reports counted %v, want 2", n)
	}
	if n := gathered(t, s, "prewarm_imds_status_reports_total", map[string]string{"state": "failed"}); n != 0 {
		t.Errorf("failed reports %v, want 0 (and present)", n)
	}
	var sum, count float64
	for _, mf := range scrape(t, s) {
		if mf.GetName() == "prewarm_imds_publish_to_provisioned_seconds" {
			sum, count = mf.Metric[0].GetHistogram().GetSampleSum(), float64(mf.Metric[0].GetHistogram().GetSampleCount())
		}
	}
	if count != 1 || sum != 4.5 {
		t.Errorf("publish to provisioned: count %v sum %v, want 1 and 4.5", count, sum)
	}

	// Stale: vm-2 only (published, silent), and only once a minute has
	// passed since its publish.
	if stale() != 0 {
		t.Errorf("stale before the minute: %v", stale())
	}
	clock.Add(time.Minute)
	if stale() != 1 {
		t.Errorf("stale after the minute: %v, want 1 (vm-2)", stale())
	}
	if rec := do(s.AdminHandler(), req{path: "/ui/?stale=1"}); !strings.Contains(rec.Body.String(), `data-instance="vm-2"`) || strings.Contains(rec.Body.String(), `data-instance="vm-1"`) {
		t.Errorf("?stale=1 page:\n%s", rec.Body)
	}
	// A report of the instance, not settled yet, restarts the wait.
	postReport(t, g, "10.0.0.2", status.Report{Seq: 1, Generation: 1, State: status.StateApplying})
	if stale() != 0 {
		t.Errorf("stale after a report: %v", stale())
	}
	clock.Add(time.Minute)
	if stale() != 1 {
		t.Errorf("stale a minute after an applying report: %v", stale())
	}
	postReport(t, g, "10.0.0.2", status.Report{Seq: 2, Generation: 1, State: status.StateFailed, Error: "no"})
	clock.Add(time.Hour)
	if stale() != 0 {
		t.Errorf("a failed guest is settled, not stale: %v", stale())
	}
	postReport(t, g, "10.0.0.2", status.Report{Seq: 3, Generation: 1, State: status.StateApplying, Error: strings.Repeat("x", 5000)})

	// The log: one info line per change of state, with the keys of
	// docs/logging.md; the dhcp-renewed event is not one.
	lines := logs.lines(t, "guest report")
	var vm1 []map[string]any
	for _, l := range lines {
		if l["instance"] == "vm-1" {
			vm1 = append(vm1, l)
		}
	}
	if len(vm1) != 3 {
		t.Fatalf("vm-1's report lines: %d, want 3 (partial-ready, applying, provisioned):\n%v", len(vm1), vm1)
	}
	p := vm1[2]
	steps, _ := p["steps"].(map[string]any)
	if p["state"] != "provisioned" || p["generation"] != float64(2) || p["seq"] != float64(3) || p["ms"] != float64(43) ||
		steps["hostname"] != float64(12) || steps["users"] != float64(30) || steps["step2"] != float64(1) || p["sincePublish"] == nil || p["level"] != "INFO" {
		t.Errorf("provisioned line: %v", p)
	}
	var failed map[string]any
	for _, l := range lines {
		if l["instance"] == "vm-2" && l["state"] == "failed" {
			failed = l
		}
	}
	if failed == nil || failed["err"] != "no" {
		t.Errorf("vm-2's failed line: %v", failed)
	}
	if l := lines[len(lines)-1]; l["err"] != strings.Repeat("x", maxLoggedError)+"…" {
		t.Errorf("a long error is not cut in the log: %d bytes", len(fmt.Sprint(l["err"])))
	}
}

// scrape reads the admin API's /metrics with Prometheus' own text parser,
// which fails the test on anything out of the exposition format.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	rec := do(s.AdminHandler(), req{path: api.PathMetrics})
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", api.PathMetrics, rec.Code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("GET %s does not parse: %v", api.PathMetrics, err)
	}
	return mfs
}

// gathered is the value of the gauge or counter name with labels, read
// from the admin API's /metrics.
func gathered(t *testing.T, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	for _, mf := range scrape(t, s) {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, lp := range m.Label {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

// A fleet page shows at most uiMaxRows rows, says so, and counts them all.
func TestFleetPageCap(t *testing.T) {
	s := newTestServer(t, Options{})
	for i := range uiMaxRows + 2 {
		rec := store.Record{ID: fmt.Sprintf("vm-%04d", i), Registration: store.Registration{HostInterface: fmt.Sprintf("tap%d", i)}}
		if i == uiMaxRows+1 {
			rec.LastStatus = &status.Report{Seq: 1, Time: status.Time{Time: time.Now()}, State: status.StateFailed, Error: "disk full"}
		}
		s.follow(store.Event{Type: store.EventChanged, Record: rec})
	}
	b := do(s.AdminHandler(), req{path: "/ui/"}).Body.String()
	if n := strings.Count(b, "<tr data-instance="); n != uiMaxRows {
		t.Errorf("%d rows, want %d", n, uiMaxRows)
	}
	if !strings.Contains(b, fmt.Sprintf("showing the first %d of %d (by instance id)", uiMaxRows, uiMaxRows+2)) || !strings.Contains(b, fmt.Sprintf("%d instances:", uiMaxRows+2)) ||
		!strings.Contains(b, `<a href="./?state=failed" class="state-failed">1 failed</a>`) || strings.Contains(b, "disk full") {
		t.Errorf("capped page:\n%s", b[:2000])
	}
	// The summary's link finds the one past the cap.
	b = do(s.AdminHandler(), req{path: "/ui/?state=failed"}).Body.String()
	if !strings.Contains(b, "disk full") || strings.Contains(b, "showing the first") {
		t.Errorf("?state=failed:\n%s", b)
	}
}

// The templates are parsed at the first render (not at start): each page
// the handlers render must be there and render an empty page, so that a
// broken template fails here rather than at an operator's first visit.
func TestUITemplatesParse(t *testing.T) {
	for _, name := range []string{"fleet", "fleet-live", "instance", "instance-live", "login"} {
		if uiTemplates().Lookup(name) == nil {
			t.Errorf("template %q is missing", name)
			continue
		}
		if _, err := uiRender(name, &uiPage{Title: "t", Root: "/ui/"}); err != nil {
			t.Errorf("render %s of an empty page: %v", name, err)
		}
	}
}
