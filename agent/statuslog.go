package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/prewarm/prewarm/agent/atomicfile"
	"github.com/prewarm/prewarm/shared/status"
)

// Names of the tenant's status files (PROTOCOL.md section 4).
const (
	StatusLogFile     = "status.jsonl" // in the log dir, one report per line
	StatusCurrentFile = "status.json"  // in the run dir, the latest report
)

// maxLogBytes is the size past which the status log is rotated to
// status.jsonl.1 (one previous file is kept).
var maxLogBytes int64 = 8 << 20

// statusLog writes the tenant's status log: every report appended as one
// line to the JSONL file (0644) and the latest alone in the current file.
// The log is opened with openOwnFile, so a symbolic link, FIFO or hard link
// planted in its place is refused, never written through; the current file
// is written to a fresh temporary file and renamed over whatever is there.
type statusLog struct {
	logPath, currentPath string
}

func newStatusLog(logDir, runDir string) (*statusLog, error) {
	for _, d := range []string{logDir, runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("status log: %w", err)
		}
	}
	return &statusLog{
		logPath:     filepath.Join(logDir, StatusLogFile),
		currentPath: filepath.Join(runDir, StatusCurrentFile),
	}, nil
}

// write appends r to the log and makes it the current report. A log that
// cannot be written does not keep the current file from being written.
func (l *statusLog) write(r *status.Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("status log: %w", err)
	}
	b = append(b, '\n')
	err = l.append(b)
	if cerr := atomicfile.Write(l.currentPath, b, atomicfile.Options{Mode: 0o644, SyncDir: true}); cerr != nil {
		err = errors.Join(err, fmt.Errorf("status file: %w", cerr))
	}
	return err
}

func (l *statusLog) append(line []byte) error {
	if fi, err := os.Lstat(l.logPath); err == nil && fi.Mode().IsRegular() && fi.Size() >= maxLogBytes {
		// Keep one previous file; `status --follow` follows the rename.
		if err := os.Rename(l.logPath, l.logPath+".1"); err != nil {
			return fmt.Errorf("rotate status log %s: %w", l.logPath, err)
		}
	}
	f, err := openOwnFile(l.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("status log: %w", err)
	}
	// The umask may have narrowed the mode: tenants must be able to read it.
	// (Chmod of the open file: it is the agent's own, checked above.)
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o644 {
		_ = f.Chmod(0o644)
	}
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("status log %s: %w", l.logPath, err)
	}
	return nil
}

// lastSeq returns the seq of the last complete line of the log (0 if
// none), so a start can log the queued reports a crash kept out of it.
func (l *statusLog) lastSeq() uint64 {
	if n := lastSeqIn(l.logPath); n > 0 {
		return n
	}
	return lastSeqIn(l.logPath + ".1") // rotated just before a crash
}

func lastSeqIn(path string) uint64 {
	f, err := openOwnFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	const tail = 128 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		if _, err := f.Seek(fi.Size()-tail, io.SeekStart); err != nil {
			return 0
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return 0
	}
	var last uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, status.MaxReportBytes*2)
	for sc.Scan() {
		var r struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Seq > last {
			last = r.Seq
		}
	}
	return last
}
