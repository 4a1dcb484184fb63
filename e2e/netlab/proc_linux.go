package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LineLog is an io.Writer that keeps the lines written to it (and copies
// them to a file), so a test can wait for a line to appear instead of
// sleeping.
type LineLog struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced on every new line
	file    *os.File
	echo    func(string) // optional live echo (the demo's narration)
}

// newLineLog returns a LineLog that also appends to path (none if "").
func newLineLog(path string) (*LineLog, error) {
	l := &LineLog{changed: make(chan struct{})}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		l.file = f
	}
	return l, nil
}

func (l *LineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Write(p)
	}
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(l.partial[:i]), "\r")
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		if l.echo != nil {
			l.echo(line)
		}
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// SetEcho makes every later line also go to f (nil stops it).
func (l *LineLog) SetEcho(f func(line string)) {
	l.mu.Lock()
	l.echo = f
	l.mu.Unlock()
}

// Lines returns a copy of the complete lines so far.
func (l *LineLog) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Len is the number of complete lines so far (a cursor for WaitFrom).
func (l *LineLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// WaitFrom waits until a line at index from or later contains substr and
// returns it with its index.
func (l *LineLog) WaitFrom(ctx context.Context, from int, substr string) (string, int, error) {
	s, i, err := l.WaitFunc(ctx, from, func(s string) bool { return strings.Contains(s, substr) })
	if err != nil {
		err = fmt.Errorf("waiting for a log line containing %q: %w", substr, err)
	}
	return s, i, err
}

// WaitFunc waits until a line at index from or later satisfies match.
func (l *LineLog) WaitFunc(ctx context.Context, from int, match func(string) bool) (string, int, error) {
	for {
		l.mu.Lock()
		for i := from; i < len(l.lines); i++ {
			if match(l.lines[i]) {
				s := l.lines[i]
				l.mu.Unlock()
				return s, i, nil
			}
		}
		from = len(l.lines)
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", -1, ctx.Err()
		}
	}
}

func (l *LineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
}

// Proc is a process the harness started and supervises. Only processes the
// harness started are ever signalled, by PID.
type Proc struct {
	Name string
	Log  *LineLog
	// LogPath is the file holding the process's output.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// viaNsenter: cmd is an nsenter that forked the real process (it
	// entered a PID namespace); signals go to that child.
	viaNsenter bool
}

// StartProc starts argv with its output in dir/name.log (and in p.Log).
// viaNsenter says argv is an nsenter into a PID namespace, whose forked
// child is the process to signal. With t non-nil the process is stopped
// (SIGTERM, then SIGKILL) when the test ends and, if the test failed, the
// tail of its output is logged.
func StartProc(t testing.TB, dir, name string, viaNsenter bool, argv ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	ll, err := newLineLog(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = ll
	cmd.Stderr = ll
	// Daemons a process leaves behind may hold the pipes; do not wait for
	// them forever.
	cmd.WaitDelay = 2 * time.Second
	// Its own process group, so a Ctrl-C of `go test` does not reach it
	// before the cleanup does.
	// Pdeathsig: if the test binary dies without its cleanups (SIGKILL),
	// the kernel kills what it started; a guest's unshare then takes the
	// guest's PID namespace with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		ll.close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: ll, LogPath: logPath, cmd: cmd, done: make(chan struct{}), viaNsenter: viaNsenter}
	go func() {
		p.err = cmd.Wait()
		ll.close()
		close(p.done)
	}()
	if t != nil {
		t.Cleanup(func() {
			p.Stop(5 * time.Second)
			if t.Failed() {
				lines := p.Log.Lines()
				if p.Name == "dnsmasq" {
					// Keep the DHCP exchanges, not their option dumps.
					var keep []string
					for _, l := range lines {
						if !strings.Contains(l, "sent size") && !strings.Contains(l, "requested options") {
							keep = append(keep, l)
						}
					}
					lines = keep
				}
				dumpTail(t, p.Name, lines, 40)
			}
		})
	}
	return p, nil
}

// dumpTail logs the last n lines under a header naming them.
func dumpTail(t testing.TB, name string, lines []string, n int) {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("---- last %d lines of %s ----\n%s", len(lines), name, strings.Join(lines, "\n"))
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// StartedPID is the PID of the command the harness started (for a
// viaNsenter process, the nsenter).
func (p *Proc) StartedPID() int { return p.cmd.Process.Pid }

// PID is the process to signal: the command itself, or the child an
// nsenter forked into the target PID namespace.
func (p *Proc) PID() (int, error) {
	if !p.viaNsenter {
		return p.cmd.Process.Pid, nil
	}
	return FirstChild(p.cmd.Process.Pid, 2*time.Second)
}

// FirstChild returns the first child of process pid, waiting up to
// timeout for it to fork.
func FirstChild(pid int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return 0, fmt.Errorf("children of %d: %w", pid, err)
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("process %d has no child after %v", pid, timeout)
		}
		time.Sleep(delay)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error {
	if done, _ := p.Exited(); done {
		return nil
	}
	pid, err := p.PID()
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (%d): %w", p.Name, pid, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", p.Name, timeout)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := p.Wait(10 * time.Second); err != nil && strings.Contains(err.Error(), "did not exit") {
		return err
	}
	return nil
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs. It is safe to call
// more than once.
func (p *Proc) Stop(grace time.Duration) {
	if done, _ := p.Exited(); done {
		return
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.Signal(syscall.SIGKILL)
	if p.viaNsenter {
		// nsenter itself, in case the child was gone already.
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// Run runs a command to completion within ctx and returns its combined
// output; the error includes the output.
func Run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// MustRun is Run with a 30 s bound that fails the test on error.
func MustRun(t testing.TB, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := Run(ctx, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
