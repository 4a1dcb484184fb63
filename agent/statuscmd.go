package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/prewarm/prewarm/agent/internal/shareopen"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// ErrNoStatus is PrintStatus's error when there is no current report:
// the agent has not run (yet) on this run dir.
var ErrNoStatus = errors.New("no status yet")

// PrintStatus writes the current report (runDir/status.json) to w: raw
// with asJSON, else readably.
func PrintStatus(w io.Writer, runDir string, asJSON bool) error {
	p := filepath.Join(runDir, StatusCurrentFile)
	b, err := readShared(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNoStatus, p)
	}
	if err != nil {
		return err
	}
	if asJSON {
		_, err = w.Write(append(bytes.TrimSpace(b), '\n'))
		return err
	}
	var r status.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	_, err = io.WriteString(w, formatReport(&r))
	return err
}

// readShared reads the file at path, opened shared for delete: the agent
// replaces status.json by a rename, which Windows refuses (access denied)
// while a reader holds the file open without FILE_SHARE_DELETE, as
// os.ReadFile does, so a status command could fail the agent's report
// (atomicfile tries the rename again for a moment; Wine refuses it while
// any handle is open). Elsewhere it is os.ReadFile.
func readShared(path string) ([]byte, error) {
	f, err := shareopen.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteReport writes r to w readably, one field a line, as PrintStatus
// does.
func WriteReport(w io.Writer, r *status.Report) error {
	_, err := io.WriteString(w, formatReport(r))
	return err
}

// WaitStatus waits for the current report (runDir/status.json) to satisfy
// done: it reads it now and again at every change of the file (fsnotify
// on runDir, which it makes when missing, and once a minute in case a
// notification is lost), until ctx ends. It returns the report that
// satisfied done, or the last report read (nil: none) with ctx's error.
func WaitStatus(ctx context.Context, runDir string, done func(*status.Report) bool) (*status.Report, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("wait for status: %w", err)
	}
	wt, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("wait for status: %w", err)
	}
	defer wt.Close()
	if err := wt.Add(runDir); err != nil {
		return nil, fmt.Errorf("wait for status: %w", err)
	}
	p := filepath.Join(runDir, StatusCurrentFile)
	var last *status.Report
	check := func() bool {
		b, err := readShared(p)
		if err != nil {
			return false // not there yet
		}
		var r status.Report
		if json.Unmarshal(b, &r) != nil {
			return false // not a report: wait for the next write
		}
		last = &r
		return done(&r)
	}
	if check() {
		return last, nil
	}
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case err := <-wt.Errors:
			return last, fmt.Errorf("wait for status: %w", err)
		case ev := <-wt.Events:
			if filepath.Clean(ev.Name) == p && check() {
				return last, nil
			}
		case <-time.After(time.Minute):
			if check() {
				return last, nil
			}
		}
	}
}

// formatReport renders a report for people, one field a line. Every value
// goes through cli.Printable: link events and errors carry a DHCP client's
// or a server's text, whose escape sequences would drive the terminal.
func formatReport(r *status.Report) string {
	var b strings.Builder
	row := func(k, v string) {
		if k != "" {
			k += ":"
		}
		fmt.Fprintf(&b, "%-12s %s\n", k, cli.Printable(v))
	}
	row("state", r.State)
	row("generation", fmt.Sprint(r.Generation))
	row("time", r.Time.UTC().Format(status.TimeFormat))
	row("seq", fmt.Sprint(r.Seq))
	row("agent", r.AgentVersion)
	if len(r.Steps) > 0 {
		row("steps", formatSteps(r.Steps))
	}
	if r.Event != "" {
		row("event", strings.TrimSpace(r.Event+" "+r.Interface+" "+strings.Join(r.Addresses, " ")))
	}
	if r.Attempt > 0 {
		row("attempt", fmt.Sprint(r.Attempt))
	}
	for i, e := range r.LinkEvents {
		k := ""
		if i == 0 {
			k = "links"
		}
		row(k, e.Time.UTC().Format(status.TimeFormat)+" "+e.Summary())
	}
	if r.RebootRequired {
		row("reboot", "required")
	}
	if r.Error != "" {
		row("error", r.Error)
	}
	return b.String()
}

func formatSteps(steps []status.Step) string {
	var parts []string
	for _, s := range steps {
		p := fmt.Sprintf("%s ok %dms", s.Name, s.MS)
		if !s.OK {
			p = fmt.Sprintf("%s FAILED %dms", s.Name, s.MS)
		}
		if s.Changed {
			p += " (changed)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// formatLine renders a report as one line, for --follow, through
// cli.Printable as formatReport.
func formatLine(r *status.Report) string {
	s := fmt.Sprintf("%s  #%d  gen %d  %s", r.Time.UTC().Format(status.TimeFormat), r.Seq, r.Generation, r.State)
	if n := len(r.LinkEvents); n > 0 && r.Event != "" && r.LinkEvents[n-1].Kind == r.Event && r.LinkEvents[n-1].Interface == r.Interface {
		s += "  event " + r.LinkEvents[n-1].Summary()
	} else if r.Event != "" {
		s += "  event " + strings.TrimSpace(r.Event+" "+r.Interface+" "+strings.Join(r.Addresses, " "))
	}
	if r.Attempt > 0 {
		s += fmt.Sprintf("  attempt %d", r.Attempt)
	}
	if len(r.Steps) > 0 {
		s += "  [" + formatSteps(r.Steps) + "]"
	}
	if r.Error != "" {
		s += "  error: " + r.Error
	}
	return cli.Printable(s) + "\n"
}

// FollowStatus prints the last report of the status log (logDir/status.jsonl)
// and then every report appended to it, as it is written, until ctx is
// done. It waits for the log to appear and follows it across replacement.
func FollowStatus(ctx context.Context, w io.Writer, logDir string, asJSON bool) error {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	wt, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("follow status: %w", err)
	}
	defer wt.Close()
	// Watch the directory: it sees the log created, written and replaced.
	if err := wt.Add(logDir); err != nil {
		return fmt.Errorf("follow status: %w", err)
	}
	path := filepath.Join(logDir, StatusLogFile)
	print := func(line []byte) error {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			return nil
		}
		if asJSON {
			_, err := w.Write(append(line, '\n'))
			return err
		}
		var r status.Report
		if json.Unmarshal(line, &r) != nil {
			return nil // not a report: skip it rather than stop following
		}
		_, err := io.WriteString(w, formatLine(&r))
		return err
	}

	var f *os.File
	var pending []byte
	var ino os.FileInfo
	open := func(fromStart bool) error {
		// Shared for delete on Windows: following the log must not keep
		// the agent (or a tenant) from rotating it.
		nf, err := shareopen.Open(path, os.O_RDONLY, 0)
		if err != nil {
			return nil // not there yet
		}
		if f != nil {
			f.Close()
		}
		f, pending = nf, nil
		ino, _ = f.Stat()
		if fromStart {
			return nil
		}
		// First open: show the last complete report, then follow.
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		if i := bytes.LastIndexByte(bytes.TrimRight(b, "\n"), '\n'); i >= 0 {
			b = b[i+1:]
		}
		if bytes.HasSuffix(b, []byte("\n")) {
			return print(b)
		}
		pending = b
		return nil
	}
	drain := func() error {
		if f == nil {
			return nil
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		pending = append(pending, b...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				return nil
			}
			if err := print(pending[:i]); err != nil {
				return err
			}
			pending = pending[i+1:]
		}
	}
	if err := open(false); err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-wt.Errors:
			return fmt.Errorf("follow status: %w", err)
		case ev := <-wt.Events:
			if filepath.Clean(ev.Name) != path {
				continue
			}
			if f == nil || ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(path); err == nil && (ino == nil || !os.SameFile(fi, ino)) {
					if err := drain(); err != nil {
						return err
					}
					if err := open(true); err != nil {
						return err
					}
				}
			}
			if err := drain(); err != nil {
				return err
			}
		case <-time.After(time.Minute):
			// A safety net for filesystems that drop notifications.
			if err := drain(); err != nil {
				return err
			}
		}
	}
}
