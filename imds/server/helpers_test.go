package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// gaugeValue reads the parked long-poll gauge of one API.
func gaugeValue(s *Server, api string) float64 {
	return s.m.parked.WithLabelValues(api).Value()
}

// tWriter sends log lines to t.Log until the test ends.
type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestServer starts a Server on a temporary data dir; it is shut down
// when the test ends.
func newTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

func mustRegister(t testing.TB, s *Server, id string, reg api.Registration) {
	t.Helper()
	if _, _, err := s.Register(context.Background(), id, reg); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func mustPublish(t testing.TB, s *Server, id, doc string) int64 {
	t.Helper()
	g, err := s.Publish(context.Background(), id, []byte(doc), nil)
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	return g
}

// req describes one request for do.
type req struct {
	method, path, from, body string
	hdr                      map[string]string
	ctx                      context.Context
}

// do runs r against h from the source address r.from.
func do(h http.Handler, r req) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodGet
	}
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.from != "" {
		hr.RemoteAddr = r.from + ":40000"
	}
	if r.ctx != nil {
		hr = hr.WithContext(r.ctx)
	}
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	return rec
}

var md = map[string]string{"Metadata": "true"}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// errBody decodes an error object, failing the test if the body is not one.
func errBody(t testing.TB, rec *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body is not an error object: %q", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != api.ContentTypeJSON {
		t.Fatalf("error Content-Type = %q", ct)
	}
	return e
}

// serveGuestLocal serves s's guest API on a new loopback listener (until
// s shuts down) and returns the listener.
func serveGuestLocal(t testing.TB, s *Server) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGuest(ln, "")
	return ln
}
