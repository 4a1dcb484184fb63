package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/internal/syncbuf"
	"github.com/prewarm/prewarm/shared/api"
)

// The guest ETag carries the store's epoch; If-None-Match takes it or the
// older generation-only form; a tag of another epoch is never current.
func TestGuestETagEpoch(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ep := b.Epoch()
	s := newTestServer(t, Options{Store: b})
	g := s.GuestHandler()
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.7"}})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	current := fmt.Sprintf(`"1.%s"`, ep)
	if rec := do(g, req{path: api.PathConfig, from: "10.0.0.7", hdr: md}); rec.Code != 200 || rec.Header().Get("ETag") != current {
		t.Fatalf("GET: %d, ETag %q; want 200 and %s", rec.Code, rec.Header().Get("ETag"), current)
	}
	foreign := `"1.0123456789abcdef"`
	tests := []struct {
		name, inm string
		query     string
		code      int
	}{
		{"current tag", current, "", 304},
		{"generation-only tag", `"1"`, "", 304},
		{"weak current tag", "W/" + current, "", 304},
		{"tag of another epoch", foreign, "", 200},
		{"long-poll with a tag of another epoch answers at once", foreign, "?wait=true&timeout=300", 200},
		{"older generation", fmt.Sprintf(`"0.%s"`, ep), "", 200},
		{"epoch not 16 hex digits", `"1.9F86D081884C7D65"`, "", 400},
		{"empty epoch", `"1."`, "", 400},
		{"epoch with a quote", `"1.0123456789abcde""`, "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rec := do(g, req{path: api.PathConfig + tt.query, from: "10.0.0.7", hdr: with(md, "If-None-Match", tt.inm), ctx: ctx})
			if rec.Code != tt.code {
				t.Fatalf("If-None-Match %s: %d %s, want %d", tt.inm, rec.Code, rec.Body, tt.code)
			}
			if tt.code == 200 && rec.Header().Get("ETag") != current {
				t.Fatalf("ETag %q, want %s", rec.Header().Get("ETag"), current)
			}
		})
	}
	// The admin API keeps plain generations.
	rec := do(s.AdminHandler(), req{method: http.MethodPut, path: "/v1/instances/vm-1/config", body: `{"hostname":"b"}`, hdr: map[string]string{"If-Match": current}})
	if rec.Code != 400 {
		t.Fatalf("admin If-Match with an epoch: %d %s, want 400", rec.Code, rec.Body)
	}
	rec = do(s.AdminHandler(), req{method: http.MethodPut, path: "/v1/instances/vm-1/config", body: `{"hostname":"b"}`, hdr: map[string]string{"If-Match": `"1"`}})
	if rec.Code != 200 || rec.Header().Get("ETag") != `"2"` {
		t.Fatalf("admin publish: %d, ETag %q; want 200 and \"2\"", rec.Code, rec.Header().Get("ETag"))
	}
}

// A parked long-poll on a real connection (hijacked, no goroutine) with
// a tag of another epoch answers at once too.
func TestHijackedLongPollForeignEpoch(t *testing.T) {
	s := newTestServer(t, Options{})
	ln := serveGuestLocal(t, s)
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(t, s, "vm-a", `{"hostname":"a"}`)
	r, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+api.PathConfig+"?wait=true&timeout=300", nil)
	r.Header.Set("Metadata", "true")
	r.Header.Set("If-None-Match", `"1.0123456789abcdef"`)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"hostname":"a"`) {
		t.Fatalf("long-poll with a foreign epoch: %d %s", resp.StatusCode, body)
	}
}

// tag is the guest ETag of generation gen on s.
func tag(s *Server, gen int64) string {
	return api.ETag{Generation: gen, Epoch: s.st.Epoch()}.String()
}

// logCount counts log records whose message contains a string.
type logCount struct{ syncbuf.Buffer }

func (l *logCount) count(s string) int { return strings.Count(l.String(), s) }

// After an older backup of the same store is restored, a guest that saw a
// later generation makes the next publish go above it; the server warns
// once; a claim past the bound changes nothing.
func TestRestoredBackupRaisesFloor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, store.FileName)
	start := func(lc *logCount) *Server {
		opts := Options{DataDir: dir}
		if lc != nil {
			opts.Logger = slog.New(slog.NewTextHandler(lc, nil))
		}
		s, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	stop := func(s *Server) {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := start(nil)
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.7"}})
	mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"10.0.0.8"}})
	mustPublish(t, s, "vm-1", `{"hostname":"one"}`)
	mustPublish(t, s, "vm-2", `{"hostname":"one"}`)
	stop(s)
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = start(nil)
	for range 4 {
		mustPublish(t, s, "vm-1", `{"hostname":"later"}`)
	}
	seen := do(s.GuestHandler(), req{path: api.PathConfig, from: "10.0.0.7", hdr: md}).Header().Get("ETag")
	stop(s)
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}

	lc := &logCount{}
	s = start(lc)
	defer stop(s)
	g := s.GuestHandler()
	if !strings.HasPrefix(seen, `"5.`) {
		t.Fatalf("the guest saw %s, want generation 5", seen)
	}
	// The guest is never handed the restored, older document: its tag
	// stays current until a publish passes it.
	for range 3 {
		rec := do(g, req{path: api.PathConfig, from: "10.0.0.7", hdr: with(md, "If-None-Match", seen)})
		if rec.Code != http.StatusNotModified {
			t.Fatalf("read with the later tag: %d, ETag %q; want 304 (the store's generation 1 is older than the guest's 5)", rec.Code, rec.Header().Get("ETag"))
		}
	}
	if n := lc.count("older backup restored"); n != 1 {
		t.Fatalf("%d warnings about a restored backup for one instance, want 1; log:\n%s", n, lc.String())
	}
	parked := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		parked <- do(g, req{path: api.PathConfig + "?wait=true&timeout=300", from: "10.0.0.7", hdr: with(md, "If-None-Match", seen)})
	}()
	select {
	case rec := <-parked:
		t.Fatalf("long-poll with the later tag answered %d, ETag %q, before any publish", rec.Code, rec.Header().Get("ETag"))
	case <-time.After(200 * time.Millisecond):
	}
	if gen := mustPublish(t, s, "vm-1", `{"hostname":"after-restore"}`); gen != 6 {
		t.Fatalf("publish after the restore: generation %d, want 6 (above the 5 the guest saw)", gen)
	}
	select {
	case rec := <-parked:
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("ETag"), `"6.`) {
			t.Fatalf("long-poll after the publish: %d, ETag %q; want 200 with generation 6", rec.Code, rec.Header().Get("ETag"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the parked long-poll was not answered by the publish past the guest's generation")
	}

	// A claim past the bound moves nothing.
	ep := strings.TrimSuffix(seen[strings.Index(seen, ".")+1:], `"`)
	huge := fmt.Sprintf(`"%d.%s"`, int64(1)<<60, ep)
	if rec := do(g, req{path: api.PathConfig, from: "10.0.0.8", hdr: with(md, "If-None-Match", huge)}); rec.Code != http.StatusNotModified {
		t.Fatalf("poll with a huge claim: %d", rec.Code)
	}
	if gen := mustPublish(t, s, "vm-2", `{"hostname":"two"}`); gen != 2 {
		t.Fatalf("publish after a claim past the bound: generation %d, want 2", gen)
	}
}
