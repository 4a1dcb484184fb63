package agent

import (
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

func configGets(reqs []request) []request {
	var out []request
	for _, r := range reqs {
		if r.Method == http.MethodGet && r.Path == api.PathConfig {
			out = append(out, r)
		}
	}
	return out
}

// TestIMDSDownAtStart: nothing listens at the IMDS address when the agent
// starts; it backs off, and once the IMDS is up it delivers the reports it
// queued, in order, and applies the config.
func TestIMDSDownAtStart(t *testing.T) {
	h := newHarness(t)
	addr := freePort(t)
	h.tweak = func(o *Options) { o.IMDSURL = "http://" + addr }
	h.start()

	// Wait (event-driven, on the agent's own log) until it has failed a few
	// times, so the outage is real.
	deadline := time.Now().Add(waitLimit)
	// (A count is logged at powers of two at most once a second.)
	for !repeated.MatchString(h.logs.String()) {
		if time.Now().After(deadline) {
			t.Fatal("agent did not report repeated failures")
		}
		time.Sleep(10 * time.Millisecond) // polling the log, not an assertion
	}
	st, err := LoadState(h.stateDir)
	if err != nil || len(st.Queue) != 2 {
		t.Fatalf("while down: state %+v, %v; want starting and waiting queued", st, err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(h.imds.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	g := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g)
	got := h.imds.all()
	checkSeq(t, got)
	if s := states(got); s != "starting/0 waiting/0 applying/1 provisioned/1" {
		t.Errorf("reports = %s", s)
	}
	// Flood control: far fewer warnings than attempts.
	if n := strings.Count(h.logs.String(), `msg="get config failed"`); n > 8 {
		t.Errorf("%d failure log lines while down: flood control does not work", n)
	}
}

// Test429RetryAfter: a 429 with Retry-After: 1 holds the next request back
// at least a second.
func Test429RetryAfter(t *testing.T) {
	h := newHarness(t)
	var limited atomic.Int32
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && limited.Add(1) <= 2 {
			w.Header().Set(api.HeaderRetryAfter, "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":"rate limited"}`))
			return true
		}
		return false
	})
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	gets := configGets(h.imds.reqs())
	if len(gets) < 3 || gets[0].Code != 429 || gets[1].Code != 429 {
		t.Fatalf("config requests %+v", gets)
	}
	for i := 1; i < 3; i++ {
		if gap := gets[i].Time.Sub(gets[i-1].Time); gap < 950*time.Millisecond {
			t.Errorf("request %d came %v after a 429 with Retry-After: 1", i, gap)
		}
	}
}

// Test500s: 5xx answers to every request for a while; the agent backs off
// (never spins), then recovers and reports everything in order.
func Test500s(t *testing.T) {
	h := newHarness(t)
	var failing atomic.Bool
	failing.Store(true)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"boom"}`))
			return true
		}
		return false
	})
	g := h.imds.publish(finalDoc)
	h.start()
	t0 := time.Now()
	h.imds.waitFor("10 failed requests", func(_ []status.Report, reqs []request) bool { return len(reqs) >= 10 })
	elapsed := time.Since(t0)
	failing.Store(false)
	h.imds.waitReport(status.StateProvisioned, g)
	// 10 requests from two loops, each backing off from 10 ms doubling:
	// spinning would take microseconds.
	if elapsed < 40*time.Millisecond {
		t.Errorf("10 failed requests within %v: the agent spins", elapsed)
	}
	got := h.imds.all()
	checkSeq(t, got)
	if s := states(got); s != "starting/0 waiting/0 applying/1 provisioned/1" {
		t.Errorf("reports = %s", s)
	}
}

// TestMalformedThenGood: a document that fails validation is reported
// failed (with the field errors) and not applied; the next good
// generation is provisioned.
func TestMalformedThenGood(t *testing.T) {
	h := newHarness(t)
	var corrupt atomic.Bool
	corrupt.Store(true)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && corrupt.Load() {
			// What a broken or hostile IMDS might serve: an unknown field
			// and a host name breaking RFC 1123.
			w.Header().Set(api.HeaderETag, `"1"`)
			w.Write([]byte(`{"generation": 1, "hostname": "-bad-", "colour": "blue"}`))
			return true
		}
		return false
	})
	h.start()
	f := h.imds.waitReport(status.StateFailed, 1)
	if !strings.Contains(f.Error, "invalid config") || !strings.Contains(f.Error, "colour") {
		t.Errorf("failed report error = %q, want the field errors", f.Error)
	}
	if c := h.plat.callList(); len(c) != 0 {
		t.Errorf("platform called for an invalid document: %v", c)
	}
	corrupt.Store(false)
	h.imds.publish(`{"hostname": "bad-1"}`) // generation 1 in the backend: the agent already failed it
	g := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g)
	checkSeq(t, h.imds.all())
}

// TestPlainPollingFallback: an IMDS that ignores wait=true (answers at
// once) is polled at PollInterval, not in a tight loop.
func TestPlainPollingFallback(t *testing.T) {
	h := newHarness(t)
	inner := h.imds.inner
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet {
			q := r.URL.Query()
			q.Del("wait")
			r.URL.RawQuery = q.Encode()
			r.Header.Del(api.HeaderIfNoneMatch)
			inner.ServeHTTP(w, r)
			return true
		}
		return false
	})
	h.start()
	t0 := time.Now()
	h.imds.waitFor("5 polls", func(_ []status.Report, reqs []request) bool { return len(configGets(reqs)) >= 5 })
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("5 polls in %v with a 100 ms poll interval", d)
	}
	g := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g)
	g2 := h.imds.publish(reconfDoc)
	h.imds.waitReport(status.StateProvisioned, g2)
	if len(h.plat.callList()) != 5 {
		t.Errorf("platform calls %v: a generation was applied twice", h.plat.callList())
	}
}

// TestRealRateLimit: the real IMDS's token bucket (1 request/s, burst 2)
// answers 429 with Retry-After; the agent honours it, never hammers, and
// delivers everything in order.
func TestRealRateLimit(t *testing.T) {
	h := newHarnessWith(t, server.Options{Rate: 1, Burst: 2})
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	// Each loop (config polls, report delivery) must wait out the
	// Retry-After it was given before its next request.
	limited := 0
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var prev *request
		for _, r := range h.imds.reqs() {
			if r.Method != method {
				continue
			}
			if prev != nil && prev.Code == http.StatusTooManyRequests {
				limited++
				if gap := r.Time.Sub(prev.Time); gap < 950*time.Millisecond {
					t.Errorf("%s came %v after a 429 with Retry-After: 1", method, gap)
				}
			}
			prev = &r
		}
	}
	if limited == 0 {
		t.Error("the rate limit never answered: the test proves nothing")
	}
	got := h.imds.all()
	checkSeq(t, got)
	if s := states(got); s != "starting/0 waiting/0 applying/1 provisioned/1" {
		t.Errorf("reports = %s", s)
	}
}

// repeated matches a failure log line of a second or later failure.
var repeated = regexp.MustCompile(`failures=(?:[2-9]|[1-9][0-9]+)\b`)
