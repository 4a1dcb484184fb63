package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prewarm/prewarm/shared/status"
)

// plantedLog makes a status log dir whose status.jsonl is planted by
// plant (a link to victim, say) and returns the log, the victim and its
// content. The victim is 0600, as a file worth protecting is.
func plantedLog(t *testing.T, plant func(victim, logPath string) error) (*statusLog, string, string) {
	t.Helper()
	d := t.TempDir()
	victim := filepath.Join(d, "victim")
	const content = "root:secret\n"
	if err := os.WriteFile(victim, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := newStatusLog(filepath.Join(d, "log"), filepath.Join(d, "run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := plant(victim, l.logPath); err != nil {
		t.Skipf("cannot plant the link here: %v", err)
	}
	if _, err := os.Lstat(l.logPath); err != nil {
		// Wine 8's CreateSymbolicLink reports success and creates nothing.
		t.Skipf("the planted link is not there: %v", err)
	}
	return l, victim, content
}

// TestStatusLogRefusesLinks: a symbolic or hard link planted where the
// status log goes is refused, never written through: the file it points at
// keeps its content and its mode. The current report is still written.
func TestStatusLogRefusesLinks(t *testing.T) {
	for name, plant := range map[string]func(victim, logPath string) error{
		"symlink":  os.Symlink,
		"hardlink": os.Link,
	} {
		t.Run(name, func(t *testing.T) {
			l, victim, content := plantedLog(t, plant)
			err := l.write(&status.Report{Seq: 1, State: status.StateStarting})
			if !errors.Is(err, errNotOwnFile) {
				t.Errorf("write through a planted %s: %v, want %v", name, err, errNotOwnFile)
			}
			b, rerr := os.ReadFile(victim)
			if rerr != nil || string(b) != content {
				t.Errorf("the link's target changed: %q, %v", b, rerr)
			}
			// (Windows modes hold only the read-only bit.)
			if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != wantMode(0o600) {
				t.Errorf("the link's target's mode changed: %v, %v", fi.Mode(), err)
			}
			if _, err := os.Stat(l.currentPath); err != nil {
				t.Errorf("current report not written: %v", err)
			}
			if n := l.lastSeq(); n != 0 {
				t.Errorf("lastSeq read through the link: %d", n)
			}
		})
	}
}

// TestStatusLogMode: the log is created 0644 and owned by the agent, and
// an own log of another mode is set back to 0644.
func TestStatusLogMode(t *testing.T) {
	d := t.TempDir()
	l, err := newStatusLog(filepath.Join(d, "log"), filepath.Join(d, "run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.write(&status.Report{Seq: 1, State: status.StateStarting}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(l.logPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.write(&status.Report{Seq: 2, State: status.StateWaiting}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(l.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantMode(0o644); fi.Mode().Perm() != want {
		t.Errorf("status log mode %v, want %v", fi.Mode(), want)
	}
	if n := l.lastSeq(); n != 2 {
		t.Errorf("lastSeq = %d, want 2", n)
	}
}
