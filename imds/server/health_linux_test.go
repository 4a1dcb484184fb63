package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// inMountNS re-runs the calling test in a mount namespace of its own
// (unshare, private propagation), where it may mount what it needs
// without touching this machine's mounts. It returns true in the child,
// where the test goes on; in the parent it reports the child's result and
// returns false.
func inMountNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv("PREWARM_TEST_MOUNTNS") == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs in a mount namespace of its own")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) (util-linux)")
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PREWARM_TEST_MOUNTNS="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a mount namespace of its own:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test failed in its mount namespace: %v", err)
	}
	return false
}

// /healthz says 503, with the reason, while the store cannot write (here:
// its filesystem is full), and 200 again once it can.
func TestHealthzStoreCannotWrite(t *testing.T) {
	if !inMountNS(t) {
		return
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=4m,mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	s := newTestServer(t, Options{DataDir: dir})
	adm := s.AdminHandler()
	if r := do(adm, req{path: api.PathHealthz}); r.Code != http.StatusOK || !strings.Contains(r.Body.String(), `"ok"`) {
		t.Fatalf("healthz with room to write: %d %s", r.Code, r.Body)
	}
	if r := do(adm, req{path: api.PathMetrics}); !strings.Contains(r.Body.String(), "prewarm_imds_store_writable 1") {
		t.Fatal("metrics lack prewarm_imds_store_writable 1")
	}
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.5"}})

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	big := `{"userData":"` + strings.Repeat("x", 60000) + `"}`
	if _, err := s.Publish(context.Background(), "vm-1", []byte(big), nil); err == nil {
		t.Fatal("a publish needing new pages succeeded on a full filesystem")
	}
	r := do(adm, req{path: api.PathHealthz})
	if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), `"unhealthy"`) || !strings.Contains(r.Body.String(), "no space left on device") {
		t.Fatalf("healthz on a full filesystem: %d %s; want 503 saying no space left on device", r.Code, r.Body)
	}
	if r := do(adm, req{path: api.PathMetrics}); !strings.Contains(r.Body.String(), "prewarm_imds_store_writable 0") {
		t.Fatal("metrics lack prewarm_imds_store_writable 0")
	}
	// Still 503 at the next probe: the filesystem is still full.
	time.Sleep(6 * time.Second)
	if r := do(adm, req{path: api.PathHealthz}); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), "bytes free") {
		t.Fatalf("healthz at the next probe, filesystem still full: %d %s", r.Code, r.Body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(adm, req{path: api.PathHealthz})
		if r.Code == http.StatusOK && strings.Contains(r.Body.String(), `"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz after space came back: %d %s", r.Code, r.Body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := s.Publish(context.Background(), "vm-1", []byte(big), nil); err != nil {
		t.Fatalf("publish after space came back: %v", err)
	}
}
