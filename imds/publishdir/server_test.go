package publishdir_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/publishdir"
	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
)

// TestPublishDir runs the directory inside the IMDS server: the server's
// Apply validates the registration and the document as the admin API
// does, and its errors are the .error files.
func TestPublishDir(t *testing.T) {
	dir := t.TempDir()
	// A file present before start is ingested by server.New itself.
	publishdir.WriteAtomic(t, dir, "vm-early.json", `{"addresses":["10.0.0.1"],"config":{"partial":true}}`)
	os.WriteFile(filepath.Join(dir, ".vm-wip.json"), []byte(`{"addresses":["10.0.0.50"]}`), 0o644)
	s := newServer(t, dir)
	if in, ok := s.Instance("vm-early"); !ok || in.Generation != 1 {
		t.Fatalf("early file not ingested at start: %+v", in)
	}
	if _, err := os.Stat(filepath.Join(dir, publishdir.DoneDir, "vm-early.json")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, file, body string
		ok               bool
		errText          string
		gen              int64
	}{
		{"register and publish", "vm-a.json", `{"addresses":["10.0.0.2"],"config":{"hostname":"a"}}`, true, "", 1},
		{"publish only, registered", "vm-a.json", `{"config":{"hostname":"a2"}}`, true, "", 2},
		{"bad config changes nothing", "vm-b.json", `{"addresses":["10.0.0.3"],"config":{"hostname":"b","bogus":true}}`, false, "invalid config", 0},
		{"address of another instance", "vm-c.json", `{"addresses":["10.0.0.2"],"config":{}}`, false, `belongs to instance "vm-a"`, 0},
		{"unknown field", "vm-d.json", `{"addresses":["10.0.0.4"],"extra":1}`, false, `unknown field "extra"`, 0},
		{"not JSON", "vm-e.json", `{{`, false, "invalid publish file", 0},
		{"invalid id", "-x.json", `{"addresses":["10.0.0.5"]}`, false, "invalid instance id", 0},
		{"config too large", "vm-f.json", `{"addresses":["10.0.0.6"],"config":{"userData":"` + strings.Repeat("x", 270000) + `"}}`, false, "exceeds 262144 bytes", 0},
		{"publish only, unregistered", "vm-g.json", `{"config":{}}`, false, `instance "vm-g" is not registered`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.TrimSuffix(tt.file, ".json")
			os.Remove(filepath.Join(dir, publishdir.DoneDir, tt.file))
			publishdir.WriteAtomic(t, dir, tt.file, tt.body)
			if tt.ok {
				publishdir.WaitFile(t, filepath.Join(dir, publishdir.DoneDir, tt.file))
				in, ok := s.Instance(id)
				if !ok || in.Generation != tt.gen {
					t.Fatalf("instance %+v, want generation %d", in, tt.gen)
				}
				return
			}
			errFile := filepath.Join(dir, publishdir.RejectedDir, tt.file+".error")
			publishdir.WaitFile(t, filepath.Join(dir, publishdir.RejectedDir, tt.file))
			b, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatal(err)
			}
			var e api.Error
			if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e.Error+" "+strings.Join(fieldsOf(e), " "), tt.errText) {
				t.Fatalf("error file %s: %v, want %q", b, err, tt.errText)
			}
			if _, ok := s.Instance(id); ok {
				t.Fatalf("rejected file registered %s", id)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, ".vm-wip.json")); err != nil {
		t.Fatalf("dotfile was touched: %v", err)
	}
	if _, ok := s.Instance("vm-wip"); ok {
		t.Fatal("dotfile ingested")
	}
}

func fieldsOf(e api.Error) []string {
	var out []string
	for _, f := range e.Fields {
		out = append(out, f.Path+": "+f.Reason)
	}
	return out
}

// newServer starts an IMDS server on a fresh store, watching dir.
func newServer(t *testing.T, dir string) *server.Server {
	t.Helper()
	s, err := server.New(server.Options{DataDir: t.TempDir(), PublishDir: dir, Logger: publishdir.TestLogger(t)})
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
