package store

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The service runs as its own user and an operator recovers its store as
// root: the recovered store keeps the damaged one's owner and group, or
// the service could not open it.
func TestRecoverBoltKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: gives the store file to another user")
	}
	dir, _ := filled(t, 3)
	path := filepath.Join(dir, FileName)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := RecoverBolt(dir, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the recovered store is %v %d:%d, want 0600 and the damaged one's owner 65534:65534", fi.Mode().Perm(), st.Uid, st.Gid)
	}
}

// A store that a running server holds (bbolt's exclusive flock) and that
// got damaged under it is not recovered: renaming it away would leave the
// server writing to the renamed file and lose every publish made since.
func TestRecoverBoltRefusesHeldStore(t *testing.T) {
	dir, _ := filled(t, 3)
	path := filepath.Join(dir, FileName)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	_, err = RecoverBolt(dir, false)
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), path) {
		t.Fatalf("recover of a store a server holds: %v; want an error naming %s as in use", err, path)
	}
	if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
		t.Fatalf("the held store was changed or moved: %v", err)
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 0 {
		t.Fatalf("the held store was renamed: %v", m)
	}
}
