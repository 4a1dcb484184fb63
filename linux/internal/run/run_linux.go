package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Cmd is one command to run. Name is a short name looked up in the path
// table ("useradd"), never a path chosen by the caller.
type Cmd struct {
	Name string
	Args []string
	// Stdin is fed to the command. It is never logged.
	Stdin []byte
}

// String renders the command for logs (without stdin).
func (c Cmd) String() string {
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Runner runs external commands.
type Runner interface {
	// Run runs c to completion and returns its standard output. A non-zero
	// exit is an *ExitError carrying the command's standard error.
	Run(ctx context.Context, c Cmd) ([]byte, error)
	// Look reports the path of the named command, or ErrNotFound.
	Look(name string) (string, error)
}

// ErrNotFound means a command is not installed.
var ErrNotFound = errors.New("command not found")

// ExitError is a command that ran and failed.
type ExitError struct {
	Cmd    string
	Code   int
	Stderr string
	Err    error
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, msg)
}

func (e *ExitError) Unwrap() error { return e.Err }

// Paths is the table of where each command may live, first match wins. It
// is the only place in linux/ that names a command's path.
var Paths = map[string][]string{
	"useradd":     {"/usr/sbin/useradd", "/sbin/useradd"},
	"usermod":     {"/usr/sbin/usermod", "/sbin/usermod"},
	"groupadd":    {"/usr/sbin/groupadd", "/sbin/groupadd"},
	"chpasswd":    {"/usr/sbin/chpasswd", "/sbin/chpasswd"},
	"visudo":      {"/usr/sbin/visudo", "/sbin/visudo"},
	"hostnamectl": {"/usr/bin/hostnamectl", "/bin/hostnamectl"},
	"timedatectl": {"/usr/bin/timedatectl", "/bin/timedatectl"},
	"networkctl":  {"/usr/bin/networkctl", "/bin/networkctl"},
	"resolvectl":  {"/usr/bin/resolvectl", "/bin/resolvectl"},
	"nmcli":       {"/usr/bin/nmcli", "/bin/nmcli"},
	"dhclient":    {"/usr/sbin/dhclient", "/sbin/dhclient"},
	"dhcpcd":      {"/usr/sbin/dhcpcd", "/sbin/dhcpcd"},
	"busybox":     {"/usr/bin/busybox", "/bin/busybox"},
	"ip":          {"/usr/sbin/ip", "/sbin/ip", "/bin/ip"},
}

// Exec runs commands for real.
type Exec struct {
	Logger *slog.Logger
}

// Look implements Runner.
func (e *Exec) Look(name string) (string, error) {
	for _, p := range Paths[name] {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotFound)
}

// Run implements Runner. Each command is logged as started and as finished
// or failed, with its arguments (never its stdin).
func (e *Exec) Run(ctx context.Context, c Cmd) ([]byte, error) {
	path, err := e.Look(c.Name)
	if err != nil {
		return nil, err
	}
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	start := time.Now()
	log.Debug("command started", "cmd", c.String())
	err = cmd.Run()
	ms := time.Since(start).Milliseconds()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		log.Warn("command failed", "cmd", c.String(), "code", code, "ms", ms, "stderr", strings.TrimSpace(stderr.String()))
		return stdout.Bytes(), &ExitError{Cmd: c.String(), Code: code, Stderr: stderr.String(), Err: err}
	}
	log.Info("command finished", "cmd", c.String(), "ms", ms)
	return stdout.Bytes(), nil
}
