package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

const report = `{"seq":1,"time":"2026-11-21T10:00:00.123Z","generation":1,"state":"provisioned","steps":[{"name":"hostname","ok":true,"ms":3}],"error":"","agentVersion":"0.1.0","event":""}`

func TestGuestRules(t *testing.T) {
	s := newTestServer(t, Options{Rate: 0.001, Burst: 3})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-empty", api.Registration{Addresses: []string{"10.0.0.3"}})
	mustRegister(t, s, "vm-iface", api.Registration{HostInterface: "vnet7", Addresses: []string{"10.0.0.7"}})
	mustPublish(t, s, "vm-a", `{"hostname":"web-01"}`)
	mustPublish(t, s, "vm-iface", `{"hostname":"iface-01"}`)
	h := s.GuestHandler()
	xff := with(md, "X-Forwarded-For", "10.0.0.1")
	tests := []struct {
		name    string
		r       req
		code    int
		errText string // substring of the error object, for errors
	}{
		{"405 before everything", req{method: "POST", path: api.PathConfig, from: "192.0.2.1", hdr: map[string]string{"X-Forwarded-For": "x"}}, 405, "method POST is not allowed"},
		{"405 HEAD", req{method: "HEAD", path: api.PathConfig, from: "10.0.0.1", hdr: md}, 405, ""},
		{"405 GET status", req{path: api.PathStatus, from: "10.0.0.1", hdr: md}, 405, "allowed: POST"},
		{"400 before 403", req{path: api.PathConfig, from: "192.0.2.1", hdr: map[string]string{"X-Forwarded-For": "x"}}, 400, `"Metadata: true" is required`},
		{"400 wrong value", req{path: api.PathConfig, from: "10.0.0.1", hdr: map[string]string{"Metadata": "yes"}}, 400, "Metadata"},
		{"403 before 404", req{path: api.PathConfig, from: "192.0.2.1", hdr: xff}, 403, "X-Forwarded-For"},
		{"403 Forwarded", req{path: api.PathConfig, from: "10.0.0.1", hdr: with(md, "Forwarded", "for=10.0.0.9")}, 403, "Forwarded"},
		{"404 unknown instance", req{path: api.PathConfig, from: "192.0.2.1", hdr: md}, 404, "unknown instance"},
		{"404 unknown path", req{path: "/metadata/v1/other", from: "10.0.0.1", hdr: md}, 404, "no such path"},
		{"404 nothing published", req{path: api.PathConfig, from: "10.0.0.3", hdr: md}, 404, "no config published"},
		{"config", req{path: api.PathConfig, from: "10.0.0.1", hdr: md}, 200, ""},
		{"metadata header case-insensitive", req{path: api.PathConfig, from: "10.0.0.1", hdr: map[string]string{"metadata": "True"}}, 200, ""},
		{"304 If-None-Match current", req{path: api.PathConfig, from: "10.0.0.7", hdr: with(md, "If-None-Match", `"1"`)}, 304, ""},
		{"bad If-None-Match", req{path: api.PathConfig, from: "10.0.0.7", hdr: with(md, "If-None-Match", `"abc"`)}, 400, "If-None-Match"},
		{"bad wait", req{path: api.PathConfig + "?wait=maybe", from: "10.0.0.7", hdr: md}, 400, "wait must be true or false"},
		{"429 after burst", req{path: api.PathConfig, from: "10.0.0.7", hdr: md}, 429, "rate limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.r)
			if rec.Code != tt.code {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.code, rec.Body.String())
			}
			if tt.code >= 400 {
				e := errBody(t, rec)
				if !strings.Contains(e.Error, tt.errText) {
					t.Fatalf("error %q does not contain %q", e.Error, tt.errText)
				}
			}
			if tt.code == 429 {
				if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
					t.Fatalf("Retry-After = %q", ra)
				}
			}
			if tt.code == 405 && rec.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// The config answer: stamped, with its ETag.
	rec := do(h, req{path: api.PathConfig, from: "10.0.0.1", hdr: md})
	if rec.Code == 429 {
		t.Fatal("unexpected 429 for vm-a")
	}
	if et := rec.Header().Get("ETag"); et != tag(s, 1) {
		t.Fatalf("ETag = %q", et)
	}
	var d config.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.InstanceID != "vm-a" || d.Generation != 1 || d.Hostname != "web-01" {
		t.Fatalf("document %+v, %v", d, err)
	}
}

func TestGuestIdentityByInterface(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "by-iface", api.Registration{HostInterface: "vnet7"})
	mustRegister(t, s, "by-addr", api.Registration{Addresses: []string{"10.0.0.9"}})
	h := s.GuestHandler()
	tests := []struct {
		name, iface, from, want string
	}{
		{"interface wins over address", "vnet7", "10.0.0.9", "by-iface"},
		{"interface with any address", "vnet7", "172.16.5.5", "by-iface"},
		{"unregistered interface falls back to address", "vnet8", "10.0.0.9", "by-addr"},
		{"no interface: address", "", "10.0.0.9", "by-addr"},
		{"interface only counts on its listener", "", "172.16.5.5", ""},
		{"IPv4-mapped IPv6 source", "", "[::ffff:10.0.0.9]", "by-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.iface != "" {
				ctx = WithHostInterface(ctx, tt.iface)
			}
			rec := do(h, req{path: api.PathInstance, from: tt.from, hdr: md, ctx: ctx})
			if tt.want == "" {
				if rec.Code != 404 {
					t.Fatalf("status %d, want 404", rec.Code)
				}
				// Its next request must come on a new connection, which
				// the listener of its interface accepts once registered.
				if c := rec.Header().Get("Connection"); c != "close" {
					t.Errorf("unknown caller answered with Connection %q, want close", c)
				}
				return
			}
			var info api.InstanceInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || info.InstanceID != tt.want {
				t.Fatalf("status %d: %q, want %s", rec.Code, rec.Body.String(), tt.want)
			}
			// A registered address is answered as registered; an instance
			// known by its interface alone is told the address it called from.
			wantAddr := "10.0.0.9"
			if tt.want == "by-iface" {
				wantAddr = strings.Trim(tt.from, "[]")
			}
			if len(info.Addresses) != 1 || info.Addresses[0] != wantAddr {
				t.Errorf("addresses %v, want [%s]", info.Addresses, wantAddr)
			}
		})
	}
}

func TestGuestStatus(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	h := s.GuestHandler()
	big := `{"seq":1,"time":"2026-11-21T10:00:00Z","state":"waiting","error":"` + strings.Repeat("x", 70000) + `"}`
	tests := []struct {
		name    string
		body    string
		code    int
		errText string
	}{
		{"valid", report, 204, ""},
		{"malformed", `{"seq":`, 400, "malformed status report"},
		{"trailing data", report + "{}", 400, "data after"},
		{"not an object", `[1,2]`, 400, "malformed"},
		{"invalid fields", `{"seq":0,"state":"sleeping"}`, 400, "invalid status report"},
		{"too large", big, 413, "exceeds 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: tt.body})
			if rec.Code != tt.code {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.code, rec.Body.String())
			}
			if tt.code >= 400 {
				if e := errBody(t, rec); !strings.Contains(e.Error, tt.errText) {
					t.Fatalf("error %q does not contain %q", e.Error, tt.errText)
				}
			}
		})
	}
	rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: `{"seq":0,"state":"sleeping"}`})
	if e := errBody(t, rec); len(e.Fields) != 3 {
		t.Fatalf("fields = %+v, want seq, state and time", e.Fields)
	}
	a, _ := s.Instance("vm-a")
	b, _ := s.Instance("vm-b")
	if a.LastStatus == nil || a.LastStatus.State != "provisioned" || b.LastStatus != nil {
		t.Fatalf("lastStatus a=%+v b=%+v", a.LastStatus, b.LastStatus)
	}

	// A retry of the delivered report (the agent crashed before recording
	// the delivery) is accepted and not stored twice; the same seq at
	// another time (an agent that lost its state) is a new report.
	if rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: report}); rec.Code != 204 {
		t.Fatalf("retry: status %d", rec.Code)
	}
	anew := strings.Replace(report, "10:00:00.123Z", "11:00:00.000Z", 1)
	if rec := do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: anew}); rec.Code != 204 {
		t.Fatalf("new report: status %d", rec.Code)
	}
	hist, err := s.st.StatusHistory(context.Background(), "vm-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Time.Hour() != 10 || hist[1].Time.Hour() != 11 {
		t.Fatalf("history %+v, want the report once, then the new one", hist)
	}
}

func TestParseWait(t *testing.T) {
	tests := []struct {
		q       string
		wait    bool
		timeout time.Duration
		bad     bool
	}{
		{"", false, 60 * time.Second, false},
		{"wait=true", true, 60 * time.Second, false},
		{"wait=true&timeout=5", true, 5 * time.Second, false},
		{"wait=true&timeout=0.25", true, 250 * time.Millisecond, false},
		{"wait=true&timeout=100000", true, 300 * time.Second, false},
		{"wait=true&timeout=-1", false, 0, true},
		{"wait=true&timeout=NaN", false, 0, true},
		{"wait=true&timeout=1e400", true, 300 * time.Second, false},
		{"wait=yes", false, 0, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.q)
		p, err := parseWait(q)
		if (err != nil) != tt.bad {
			t.Errorf("%q: err = %v", tt.q, err)
			continue
		}
		if !tt.bad && (p.wait != tt.wait || p.timeout != tt.timeout) {
			t.Errorf("%q: got %+v", tt.q, p)
		}
	}
}

// poll runs a guest long-poll in the background.
func poll(h http.Handler, from, query, inm string) chan *reqResult {
	ch := make(chan *reqResult, 1)
	go func() {
		hdr := md
		if inm != "" {
			hdr = with(md, "If-None-Match", inm)
		}
		start := time.Now()
		rec := do(h, req{path: api.PathConfig + "?" + query, from: from, hdr: hdr})
		ch <- &reqResult{code: rec.Code, body: rec.Body.String(), etag: rec.Header().Get("ETag"), took: time.Since(start)}
	}()
	return ch
}

type reqResult struct {
	code       int
	body, etag string
	took       time.Duration
}

func waitResult(t *testing.T, ch chan *reqResult, within time.Duration) *reqResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("long-poll not answered within %v", within)
		return nil
	}
}

// parked waits until n guest long-polls are parked.
func parked(t *testing.T, s *Server, n int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if got := gaugeValue(s, "guest"); got >= float64(n) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d long-polls never parked", n)
}

func TestGuestLongPoll(t *testing.T) {
	s := newTestServer(t, Options{Rate: 0.001, Burst: 3})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	h := s.GuestHandler()

	t.Run("first publish wakes a poll without If-None-Match", func(t *testing.T) {
		ch := poll(h, "10.0.0.1", "wait=true&timeout=10", "")
		parked(t, s, 1)
		mustPublish(t, s, "vm-a", `{"partial":true}`)
		r := waitResult(t, ch, 5*time.Second)
		if r.code != 200 || r.etag != tag(s, 1) || !strings.Contains(r.body, `"partial":true`) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("newer generation wakes; other instances' publishes do not", func(t *testing.T) {
		ch := poll(h, "10.0.0.1", "wait=true&timeout=10", `"1"`)
		parked(t, s, 1)
		mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}, Labels: map[string]string{"x": "y"}})
		mustPublish(t, s, "vm-b", `{"hostname":"other"}`)
		mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}, Labels: map[string]string{"re": "registered"}})
		select {
		case r := <-ch:
			t.Fatalf("woken by another instance or a re-registration: %+v", r)
		case <-time.After(100 * time.Millisecond):
		}
		mustPublish(t, s, "vm-a", `{"hostname":"final"}`)
		r := waitResult(t, ch, 5*time.Second)
		if r.code != 200 || r.etag != tag(s, 2) || !strings.Contains(r.body, `"final"`) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("304 at the timeout, one token spent", func(t *testing.T) {
		// vm-a spent 2 of its 3 tokens above.
		r := waitResult(t, poll(h, "10.0.0.1", "wait=true&timeout=0.2", `"2"`), 5*time.Second)
		if r.code != 304 || r.etag != tag(s, 2) || r.took < 200*time.Millisecond {
			t.Fatalf("%+v", r)
		}
		if rec := do(h, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}); rec.Code != 429 {
			t.Fatalf("4th request: %d, want 429", rec.Code)
		}
	})
}

func TestGuestLongPollDeleteAndShutdown(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	h := s.GuestHandler()
	del := poll(h, "10.0.0.1", "wait=true&timeout=30", "")
	down := poll(h, "10.0.0.2", "wait=true&timeout=30", "")
	parked(t, s, 2)
	if err := s.Delete(context.Background(), "vm-a"); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, del, 5*time.Second); r.code != 404 || !strings.Contains(r.body, "unknown instance") {
		t.Fatalf("after delete: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, down, 5*time.Second); r.code != 304 {
		t.Fatalf("after shutdown: %+v", r)
	}
}

// TestKeptAliveConnFollowsTheIndex: a connection's requests are attributed
// anew when the index changes, though the connection remembers whom its
// last request was attributed to (identifyConn).
func TestKeptAliveConnFollowsTheIndex(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	k := dialKeptAlive(t, ln.Addr().String())
	whoAmI := func() string {
		t.Helper()
		id, closes := k.whoAmI()
		if id == "" || closes {
			t.Fatalf("answer for %q, closes %v: want a known instance on a kept connection", id, closes)
		}
		return id
	}
	for range 2 {
		if id := whoAmI(); id != "vm-a" {
			t.Fatalf("attributed to %q, want vm-a", id)
		}
	}
	// The address moves to vm-b: the same connection's next request is vm-b's.
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.2"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"127.0.0.1"}})
	if id := whoAmI(); id != "vm-b" {
		t.Fatalf("after the move: attributed to %q, want vm-b", id)
	}
}

// TestGuestAnswersKeepTheConnection: every answer to a known guest keeps
// its connection, as HTTP/1.1 allows (issue 15: no needless `Connection:
// close`), errors included; all of these go over one connection, in turn.
// Only an unknown caller's answer closes it (closeUnknown).
func TestGuestAnswersKeepTheConnection(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	gen := mustPublish(t, s, "vm-a", `{"hostname":"web-01"}`)
	etag := s.get("vm-a").cur.Load().etag[0]
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	rep := func(seq int) string {
		return fmt.Sprintf(`{"seq":%d,"time":"2026-11-21T10:00:00.123Z","generation":%d,"state":"provisioned"}`, seq, gen)
	}
	for _, tc := range []struct {
		name, method, path, hdr, body string
		want                          int
	}{
		{"GET config", "GET", api.PathConfig, "", "", http.StatusOK},
		{"GET config, not modified", "GET", api.PathConfig, "If-None-Match: " + etag + "\r\n", "", http.StatusNotModified},
		{"GET instance", "GET", api.PathInstance, "", "", http.StatusOK},
		{"POST status", "POST", api.PathStatus, "", rep(1), http.StatusNoContent},
		{"POST the same status again", "POST", api.PathStatus, "", rep(1), http.StatusNoContent},
		{"POST status, chunked", "POST", api.PathStatus, "Transfer-Encoding: chunked\r\n", rep(2), http.StatusNoContent},
		{"POST status, escapes (encoding/json's path)", "POST", api.PathStatus, "", `{"seq":3,"time":"2026-11-21T10:00:00.123Z","state":"failed","error":"a \"quoted\" \u00e9"}`, http.StatusNoContent},
		{"malformed status", "POST", api.PathStatus, "", `{"seq":`, http.StatusBadRequest},
		{"invalid status", "POST", api.PathStatus, "", `{"seq":0}`, http.StatusBadRequest},
		{"bad If-None-Match", "GET", api.PathConfig, "If-None-Match: nonsense\r\n", "", http.StatusBadRequest},
		{"wrong method", "DELETE", api.PathConfig, "", "", http.StatusMethodNotAllowed},
		{"no such path", "GET", "/metadata/v1/nothing", "", "", http.StatusNotFound},
		{"bad wait", "GET", api.PathConfig + "?wait=maybe", "", "", http.StatusBadRequest},
	} {
		body := tc.body
		hdr := tc.hdr
		if strings.Contains(hdr, "chunked") {
			body = fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(tc.body), tc.body)
		} else if body != "" {
			hdr += fmt.Sprintf("Content-Length: %d\r\n", len(body))
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n%s\r\n%s", tc.method, tc.path, hdr, body); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.want, b)
		}
		if resp.Close {
			t.Fatalf("%s: answered %d with Connection: close", tc.name, resp.StatusCode)
		}
	}
	inst := s.get("vm-a")
	inst.appendMu.Lock()
	got := inst.lastAppended
	inst.appendMu.Unlock()
	if got == nil || got.Seq != 3 || got.Error != `a "quoted" é` {
		t.Fatalf("last stored report: %+v", got)
	}
}
