package agent

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"net/http"

	"github.com/prewarm/prewarm/internal/syncbuf"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

const plaintext = "Pl41ntext-S3cret!"

// TestPlaintextPasswordNeverLeaks drives the worst cases: a platform whose
// users step fails with an error echoing the password, and a document that
// fails validation with the password inside. The password must reach no
// report the IMDS receives, no log line and no file the agent writes.
func TestPlaintextPasswordNeverLeaks(t *testing.T) {
	h := newHarness(t)
	h.plat.setFail(status.StepUsers, errors.New(`chpasswd: "alice:`+plaintext+`" rejected`))
	var bodies syncbuf.Buffer
	// record copies a report's body into bodies and gives the handler it back.
	record := func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies.Write(b)
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost {
			record(r)
		}
		return false
	})
	h.start()
	g1 := h.imds.publish(`{"users": [{"name": "alice", "password": "` + plaintext + `"}]}`)
	f := h.imds.waitReport(status.StateFailed, g1)
	if !strings.Contains(f.Error, "REDACTED") {
		t.Errorf("failed report error %q: want the password replaced by REDACTED", f.Error)
	}

	// A document the agent rejects, password and all.
	var bad atomic.Bool
	bad.Store(true)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost {
			record(r)
			return false
		}
		if bad.Load() {
			w.Header().Set(api.HeaderETag, `"99"`)
			w.Write([]byte(`{"generation": 99, "users": [{"name": "alice", "password": "` + plaintext + `", "passwordHash": "x"}], "extra": 1}`))
			bad.Store(false)
			return true
		}
		return false
	})
	h.imds.publish(`{"timezone": "UTC"}`) // wakes the parked poll
	h.imds.waitReport(status.StateFailed, 99)
	h.stop()

	if strings.Contains(bodies.String(), plaintext) {
		t.Error("the password reached the IMDS in a report")
	}
	if strings.Contains(h.logs.String(), plaintext) {
		t.Error("the password reached the log")
	}
	root := filepath.Dir(h.stateDir)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), plaintext) {
			t.Errorf("the password is in %s", p)
		}
		return nil
	})
}
