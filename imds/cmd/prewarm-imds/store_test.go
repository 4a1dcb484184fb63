package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// newStore makes a store in a new directory holding n instances, each
// with a published document, and returns the directory and its epoch.
func newStore(t *testing.T, n int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 600)
	for i := range n {
		id := fmt.Sprintf("vm-%03d", i)
		_, err := s.Apply(context.Background(), id, store.Change{
			Register: &store.Registration{Addresses: []string{fmt.Sprintf("10.0.%d.%d", i/200, i%200+1)}},
			Publish: func(id string, gen int64) ([]byte, error) {
				return fmt.Appendf(nil, `{"instanceId":%q,"generation":%d,"userData":%q}`, id, gen, pad), nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	epoch := s.Epoch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, epoch
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// serve refuses a damaged store, saying which file and what to do, and
// leaves the file as it is; store check says the same with exit status 1.
func TestServeRefusesDamagedStore(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
		reason string
	}{
		{"empty file", func(path string) error { return os.Truncate(path, 0) }, "0 bytes"},
		{"truncated", func(path string) error {
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			return os.Truncate(path, fi.Size()/4)
		}, "truncated"},
		{"garbage", func(path string) error {
			return os.WriteFile(path, bytes.Repeat([]byte("not a database "), 5000), 0o600)
		}, "not a prewarm-imds store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := newStore(t, 30)
			path := filepath.Join(dir, store.FileName)
			if err := tt.damage(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			code, _, stderr := runCmd("serve", "--data-dir", dir, "--listen", "", "--admin-socket", "")
			if code != 1 {
				t.Fatalf("serve exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, want := range []string{path, tt.reason, "restore it from a backup", "prewarm-imds store check --data-dir " + dir, "prewarm-imds store recover --data-dir " + dir} {
				if !strings.Contains(stderr, want) {
					t.Errorf("serve's error does not say %q:\n%s", want, stderr)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Fatal("serve changed the damaged store file")
			}
			code, stdout, stderr := runCmd("store", "check", "--data-dir", dir)
			if code != 1 || !strings.Contains(stderr, path) || !strings.Contains(stderr, tt.reason) {
				t.Fatalf("store check of a damaged store: exit %d, stdout %q, stderr %q; want 1 and the reason", code, stdout, stderr)
			}
		})
	}
}

func TestStoreCheckAndRecover(t *testing.T) {
	dir, epoch := newStore(t, 30)
	path := filepath.Join(dir, store.FileName)
	code, stdout, stderr := runCmd("store", "check", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "ok") || !strings.Contains(stdout, "30 instances") || !strings.Contains(stdout, epoch) {
		t.Fatalf("check of a healthy store: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := runCmd("store", "recover", "--data-dir", dir); code != 1 || !strings.Contains(stderr, "not damaged") {
		t.Fatalf("recover of a healthy store: exit %d, stderr %q; want 1, not damaged", code, stderr)
	}
	if code, _, stderr := runCmd("store", "check", "--data-dir", t.TempDir()); code != 6 || !strings.Contains(stderr, "no such file") {
		t.Fatalf("check without a store: exit %d, stderr %q; want 6 (not found)", code, stderr)
	}
	for _, args := range [][]string{{"store"}, {"store", "fix"}, {"store", "check", "extra"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Fatalf("%q: exit %d, want 2", args, code)
		}
	}

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd("store", "recover", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "new epoch") || !strings.Contains(stdout, ".damaged-") {
		t.Fatalf("recover of an empty file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("recover:\n%s", stdout)
	code, stdout, _ = runCmd("store", "check", "--data-dir", dir)
	if code != 0 || strings.Contains(stdout, epoch) {
		t.Fatalf("check after recover: exit %d, %q; want ok with a new epoch", code, stdout)
	}
	kept, _ := filepath.Glob(path + ".damaged-*")
	if len(kept) != 1 {
		t.Fatalf("damaged files kept: %q, want one", kept)
	}
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatalf("the recovered store does not open: %v", err)
	}
	defer s.Close()
	if s.Epoch() == epoch || !store.ValidEpoch(s.Epoch()) {
		t.Fatalf("recovered store's epoch %q; the old one was %q", s.Epoch(), epoch)
	}
}

// A recover that loses instances whose reports the kept reports.db holds
// says their reports are dead, naming them; the others are not named.
func TestStoreRecoverSaysLostReportsAreDead(t *testing.T) {
	dir, _ := newStore(t, 3)
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"vm-000", "vm-002"} {
		if err := s.AppendStatus(context.Background(), id, status.Report{Seq: 1, Time: status.Time{Time: time.Unix(1700000000, 0)}, State: status.StateWaiting}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := os.Truncate(filepath.Join(dir, store.FileName), 0); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("store", "recover", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "status reports in "+store.ReportsFileName+" are dead for good") ||
		!strings.Contains(stdout, "vm-000, vm-002\n") || strings.Contains(stdout, "vm-001") {
		t.Fatalf("recover of an empty imds.db beside reports of vm-000 and vm-002: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("recover:\n%s", stdout)
}

// A damaged reports.db: serve refuses it naming the file, check says so,
// recover moves it aside and keeps imds.db (its epoch, its instances);
// the store then opens with empty histories.
func TestStoreRecoverDamagedReports(t *testing.T) {
	dir, epoch := newStore(t, 5)
	rpath := filepath.Join(dir, store.ReportsFileName)
	if err := os.WriteFile(rpath, bytes.Repeat([]byte("not a database "), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd("serve", "--data-dir", dir, "--listen", "", "--admin-socket", "")
	if code != 1 || !strings.Contains(stderr, rpath) || !strings.Contains(stderr, "not a prewarm-imds store") {
		t.Fatalf("serve with a damaged reports.db: exit %d, stderr:\n%s", code, stderr)
	}
	code, stdout, stderr := runCmd("store", "check", "--data-dir", dir)
	if code != 1 || !strings.Contains(stderr, rpath) {
		t.Fatalf("check with a damaged reports.db: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCmd("store", "recover", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "not damaged, kept") || !strings.Contains(stdout, store.ReportsFileName+".damaged-") || !strings.Contains(stdout, "status histories start again") {
		t.Fatalf("recover of a damaged reports.db: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("recover:\n%s", stdout)
	if kept, _ := filepath.Glob(rpath + ".damaged-*"); len(kept) != 1 {
		t.Fatalf("damaged reports files kept: %q, want one", kept)
	}
	s, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatalf("the store does not open after recover: %v", err)
	}
	recs, err := s.Load(context.Background())
	if err != nil || len(recs) != 5 || s.Epoch() != epoch {
		t.Fatalf("after recover: %d instances, epoch %s (was %s), %v", len(recs), s.Epoch(), epoch, err)
	}
	s.Close()
	code, stdout, _ = runCmd("store", "check", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "status reports "+rpath+": ok") {
		t.Fatalf("check after recover: exit %d, %q", code, stdout)
	}
}
