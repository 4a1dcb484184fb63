package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the agent's lock in the state dir.
const LockFile = "agent.lock"

// ErrLocked is returned by LockStateDir when another agent holds the lock:
// two agents on one state dir would interleave their report sequences.
var ErrLocked = errors.New("another prewarm-agent is already running on this state dir")

// StateLock is an exclusive lock on a state dir, held until Release or the
// end of the process.
type StateLock struct{ f *os.File }

// LockStateDir takes the exclusive lock on dir (creating dir, 0700, and
// LockFile, 0600) without waiting: if another agent holds it, the error
// wraps ErrLocked and names the holder's pid. The lock is the operating
// system's (flock on Linux, LockFileEx on Windows), tied to the open file,
// so the end of its process, even a crash, releases it: no stale lock to
// clean up. The file is opened close-on-exec, so the DHCP clients the agent
// starts (which outlive it) never inherit and keep it.
func LockStateDir(dir string) (*StateLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	p := filepath.Join(dir, LockFile)
	f, err := openOwnFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	if err := lockFile(f); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("lock state dir %s: %w (pid %s holds %s)", dir, ErrLocked, holder, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// The holder's pid, for the message of the next one to try.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &StateLock{f: f}, nil
}

// Release drops the lock.
func (l *StateLock) Release() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("release state dir lock: %w", err)
	}
	return nil
}

// readHolder returns the pid the lock's holder wrote, or "unknown".
func readHolder(f *os.File) string {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 32))
	if s := strings.TrimSpace(string(b)); s != "" {
		if _, err := strconv.Atoi(s); err == nil {
			return s
		}
	}
	return "unknown"
}
