package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLockStateDir: one lock per state dir; the second taker fails at
// once with ErrLocked naming the holder's pid; a release frees it.
func TestLockStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l1, err := LockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockStateDir(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want %v", err, ErrLocked)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second lock's error %q does not name the holder's pid and the dir", err)
	}
	if err := l1.Release(); err != nil {
		t.Fatal(err)
	}
	l3, err := LockStateDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l3.Release()
}

// TestLockStateDirRefusesSymlink: a lock file that is a symbolic link is
// refused, not created or truncated through.
func TestLockStateDirRefusesSymlink(t *testing.T) {
	d := t.TempDir()
	victim := filepath.Join(d, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d, "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, LockFile)); err != nil {
		t.Skipf("symlink: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, LockFile)); err != nil {
		// Wine 8's CreateSymbolicLink reports success and creates nothing.
		t.Skipf("the planted link is not there: %v", err)
	}
	if l, err := LockStateDir(dir); !errors.Is(err, errNotOwnFile) {
		t.Errorf("lock through a symlink: %v, want %v", err, errNotOwnFile)
		if err == nil {
			l.Release()
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}
}
