package publishdir

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

// testMaxBytes is the cap the IMDS server sets: a full document plus a
// large registration.
const testMaxBytes = config.MaxDocumentBytes + 4<<20

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLogger logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startTest starts a Dir on dir that hands files to apply; stop (also run
// at cleanup) stops it once.
func startTest(t *testing.T, dir string, apply ApplyFunc) (pd *Dir, stop func()) {
	t.Helper()
	pd, err := Start(Options{
		Path:         dir,
		MaxFileBytes: testMaxBytes,
		Apply:        apply,
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(pd.Stop) }
	t.Cleanup(stop)
	return pd, stop
}

// writeAtomic writes name in dir the way the contract asks publishers to:
// a dot-file first, then a rename.
func writeAtomic(t *testing.T, dir, name, body string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

// apiError is a Rejection as the server's *Error is one.
type apiError struct {
	status int
	body   api.Error
}

func (e *apiError) Error() string        { return e.body.Error }
func (e *apiError) HTTPStatus() int      { return e.status }
func (e *apiError) ErrorBody() api.Error { return e.body }

// TestIngest drives the directory with an Apply that refuses some
// ids: what it is handed, where each file ends up, and the .error file
// (the exact bytes of the error object, one line of JSON, HTML not
// escaped).
func TestIngest(t *testing.T) {
	dir := t.TempDir()
	// A file present before start is ingested by Start itself.
	writeAtomic(t, dir, "vm-early.json", `{"addresses":["10.0.0.1"],"config":{"partial":true}}`)
	os.WriteFile(filepath.Join(dir, ".vm-wip.json"), []byte(`{"addresses":["10.0.0.50"]}`), 0o644)
	var mu sync.Mutex
	got := map[string]api.PublishFile{}
	var rejects atomic.Int32
	pd, err := Start(Options{
		Path:         dir,
		MaxFileBytes: testMaxBytes,
		Logger:       testLogger(t),
		OnReject:     func() { rejects.Add(1) },
		Apply: func(_ context.Context, id string, f api.PublishFile) (int64, error) {
			switch id {
			case "vm-refused":
				return 0, &apiError{http.StatusBadRequest, api.Error{Error: "invalid registration", Fields: []api.FieldError{{Path: "addresses[0]", Reason: "must be <unicast> & \"v4\""}}}}
			case "vm-unavailable":
				return 0, &apiError{http.StatusServiceUnavailable, api.Error{Error: "store unavailable"}}
			case "vm-broken":
				return 0, errors.New("not an API error")
			}
			mu.Lock()
			defer mu.Unlock()
			got[id] = f
			return 1, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pd.Stop)
	mu.Lock()
	if f, ok := got["vm-early"]; !ok || string(f.Config) != `{"partial":true}` || len(f.Addresses) != 1 {
		t.Fatalf("early file not applied at start: %+v", f)
	}
	mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, DoneDir, "vm-early.json")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, file, body string
		ok               bool
		errFile          string // the .error file, byte for byte
	}{
		{"register and publish", "vm-a.json", `{"addresses":["10.0.0.2"],"hostInterface":"vnet0","labels":{"k":"v"},"config":{"hostname":"a"}}`, true, ""},
		{"null config, register only", "vm-b.json", `{"addresses":["10.0.0.3"],"config":null}`, true, ""},
		{"refused by apply", "vm-refused.json", `{"addresses":["224.0.0.1"]}`, false,
			`{"error":"invalid registration","fields":[{"path":"addresses[0]","reason":"must be <unicast> & \"v4\""}]}` + "\n"},
		{"unknown field", "vm-d.json", `{"addresses":["10.0.0.4"],"extra":1}`, false,
			`{"error":"invalid publish file: json: unknown field \"extra\""}` + "\n"},
		{"not JSON", "vm-e.json", `{{`, false,
			`{"error":"invalid publish file: invalid character '{' looking for beginning of object key string"}` + "\n"},
		{"trailing data", "vm-t.json", `{"addresses":["10.0.0.4"]} {}`, false,
			`{"error":"invalid publish file: data after the JSON object"}` + "\n"},
		{"invalid id", "-x.json", `{"addresses":["10.0.0.5"]}`, false,
			`{"error":"invalid instance id \"-x\" (from the file name): must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}` + "\n"},
		{"nothing to apply", "vm-n.json", `{"labels":{"k":"v"},"config":null}`, false,
			`{"error":"publish file has neither addresses/hostInterface nor config"}` + "\n"},
	}
	wantRejects := int32(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.TrimSuffix(tt.file, ".json")
			writeAtomic(t, dir, tt.file, tt.body)
			if tt.ok {
				waitFile(t, filepath.Join(dir, DoneDir, tt.file))
				mu.Lock()
				defer mu.Unlock()
				var want api.PublishFile
				json.Unmarshal([]byte(tt.body), &want)
				if string(want.Config) == "null" {
					want.Config = nil
				}
				if f, ok := got[id]; !ok || !jsonEqual(f, want) {
					t.Fatalf("applied %+v, want %+v", f, want)
				}
				return
			}
			wantRejects++
			waitFile(t, filepath.Join(dir, RejectedDir, tt.file))
			b, err := os.ReadFile(filepath.Join(dir, RejectedDir, tt.file+".error"))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.errFile {
				t.Fatalf("error file\n%s\nwant\n%s", b, tt.errFile)
			}
			if n := rejects.Load(); n != wantRejects {
				t.Fatalf("OnReject ran %d times, want %d", n, wantRejects)
			}
		})
	}

	// An Apply error that is not a 4xx rejection leaves the file for the
	// next start.
	for _, name := range []string{"vm-unavailable.json", "vm-broken.json"} {
		writeAtomic(t, dir, name, `{"addresses":["10.0.0.9"]}`)
	}
	writeAtomic(t, dir, "vm-z.json", `{"addresses":["10.0.0.10"]}`) // ingested after the two (sorted)
	waitFile(t, filepath.Join(dir, DoneDir, "vm-z.json"))
	for _, name := range []string{"vm-unavailable.json", "vm-broken.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s was moved: %v", name, err)
		}
	}
	if n := rejects.Load(); n != wantRejects {
		t.Fatalf("OnReject ran %d times, want %d", n, wantRejects)
	}

	if _, err := os.Stat(filepath.Join(dir, ".vm-wip.json")); err != nil {
		t.Fatalf("dotfile was touched: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if _, ok := got["vm-wip"]; ok {
		t.Fatal("dotfile ingested")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
