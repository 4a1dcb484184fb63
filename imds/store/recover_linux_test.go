package store

import (
	"os"
	"path/filepath"
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
