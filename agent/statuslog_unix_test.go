//go:build !windows

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// TestStatusLogRefusesFIFO: a FIFO planted where the status log goes
// neither blocks the agent (an open for writing would wait for a reader
// for good, with the agent's lock held) nor is written to; nor does the
// start's read of the last seq block on it.
func TestStatusLogRefusesFIFO(t *testing.T) {
	l, _, _ := plantedLog(t, func(_, p string) error { return syscall.Mkfifo(p, 0o666) })
	done := make(chan error, 1)
	go func() {
		_ = l.lastSeq()
		done <- l.write(&status.Report{Seq: 1, State: status.StateStarting})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errNotOwnFile) {
			t.Errorf("write to a FIFO: %v, want %v", err, errNotOwnFile)
		}
	case <-time.After(waitLimit):
		t.Fatal("the status log blocked on a FIFO")
	}
}

// TestStatusLogRefusesForeignFile: a status log owned by another user
// (planted while the directory was writable, say) is not written to, and
// its mode is left alone. Needs root, to make the file another user's.
func TestStatusLogRefusesForeignFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the planted file")
	}
	l, _, _ := plantedLog(t, func(_, p string) error {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return err
		}
		return os.Chown(p, 65534, 65534)
	})
	if err := l.write(&status.Report{Seq: 1, State: status.StateStarting}); !errors.Is(err, errNotOwnFile) {
		t.Errorf("write to another user's file: %v, want %v", err, errNotOwnFile)
	}
	fi, err := os.Stat(l.logPath)
	if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("another user's file was changed: %v, %v", fi, err)
	}
}

// TestStatusLogOwner: a log the agent creates is its own (root's, as the
// service runs) and 0644 whatever the umask.
func TestStatusLogOwner(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	d := t.TempDir()
	l, err := newStatusLog(filepath.Join(d, "log"), filepath.Join(d, "run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.write(&status.Report{Seq: 1, State: status.StateStarting}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.logPath, l.currentPath} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || int(st.Uid) != os.Geteuid() {
			t.Errorf("%s: mode %v uid %d, want a regular 0644 file of uid %d", p, fi.Mode(), st.Uid, os.Geteuid())
		}
	}
}
