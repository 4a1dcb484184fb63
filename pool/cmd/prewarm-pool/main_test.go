package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/shared/api"
)

// serveUnix answers the controller's API on a Unix socket with h.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pool.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"claim"},
		{"claim", "small"},
		{"claim", "small", "--config", "x.json", "--output", "yaml"},
		{"release"},
		{"status", "extra"},
		{"serve"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

func TestClaimPrintsResultAndSendsRequest(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "doc.json")
	os.WriteFile(doc, []byte(`{"hostname": "web-01"}`), 0o644)
	var got controller.ClaimRequest
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != controller.PathClaims {
			http.Error(w, "wrong route", 404)
			return
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		json.NewEncoder(w).Encode(controller.ClaimResult{ClaimID: "c-1", VM: "pw-small-abcdef", MAC: "52:54:00:aa:bb:cc", Network: "tenant-a",
			IP: "10.10.1.2", Generation: 2, Path: "warm", Timings: controller.Timings{PickedMS: 1, BouncedMS: 40, ProvisionedMS: 900, TotalMS: 905, AppliedMS: 300}})
	}))
	var out, errb bytes.Buffer
	if code := run([]string{"claim", "small", "--config", doc, "--network", "tenant-a", "--claim-id", "c-1", "--timeout", "5s", "--socket", sock}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if got.Flavor != "small" || got.Network != "tenant-a" || got.ClaimID != "c-1" || got.TimeoutMS != 5000 || string(got.Document) != `{"hostname":"web-01"}` {
		t.Errorf("request = %+v", got)
	}
	for _, want := range []string{"pw-small-abcdef", "52:54:00:aa:bb:cc", "10.10.1.2", "warm", "bounced 40", "provisioned 900", "total 905", "300 ms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"claim", "small", "--config", doc, "--output", "json", "--socket", sock}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res controller.ClaimResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Path != "warm" || res.Timings.TotalMS != 905 {
		t.Errorf("--output json = %s (%v)", out.String(), err)
	}
}

func TestErrorObjectPrintedWithFields(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "doc.json")
	os.WriteFile(doc, []byte(`{}`), 0o644)
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.ContentTypeJSON)
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.Error{Error: "unknown flavor", Fields: []api.FieldError{{Path: "flavor", Reason: `no flavor "huge" in the pool's config`}}})
	}))
	var out, errb bytes.Buffer
	if code := run([]string{"claim", "huge", "--config", doc, "--socket", sock}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "unknown flavor") || !strings.Contains(errb.String(), `flavor: no flavor "huge"`) {
		t.Errorf("stderr = %q", errb.String())
	}
	if code := run([]string{"status", "--socket", filepath.Join(t.TempDir(), "none.sock")}, &out, &errb); code != 1 {
		t.Errorf("status with no controller: exit %d, want 1", code)
	}
}
