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
// table ("useradd", "netsh"), never a path chosen by the caller.
type Cmd struct {
	Name string
	Args []string
	// Stdin is fed to the command. It is never logged.
	Stdin []byte
}

// String renders the command for logs (without stdin); an argument with
// blanks or quotes is quoted.
func (c Cmd) String() string {
	parts := append([]string{c.Name}, c.Args...)
	for i, p := range parts {
		if strings.ContainsAny(p, " \t\"") {
			parts[i] = fmt.Sprintf("%q", p)
		}
	}
	return strings.TrimSpace(strings.Join(parts, " "))
}

// Runner runs external commands.
type Runner interface {
	// Run runs c to completion and returns its standard output. A non-zero
	// exit is an *ExitError carrying the command's output.
	Run(ctx context.Context, c Cmd) ([]byte, error)
	// Look reports the path of the named command, or ErrNotFound.
	Look(name string) (string, error)
}

// ErrNotFound means a command is not installed (or not in the table).
var ErrNotFound = errors.New("command not found")

// ExitError is a command that ran and failed.
type ExitError struct {
	Cmd    string
	Code   int
	Stderr string
	// Stdout is kept for the message: some commands (netsh) write their
	// errors there.
	Stdout string
	Err    error
}

// message is what the command said about its failure: its standard error,
// or its standard output when that is empty, at most 512 bytes.
func (e *ExitError) message() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(e.Stdout)
	}
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	return msg
}

func (e *ExitError) Error() string {
	if msg := e.message(); msg != "" {
		return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, msg)
	}
	return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exec runs commands for real.
type Exec struct {
	Logger *slog.Logger
}

// Defaults returns what an Options struct with a Logger and a Runner
// means when they are nil: log, or a logger that discards; r, or an Exec
// logging to that logger.
func Defaults(log *slog.Logger, r Runner) (*slog.Logger, Runner) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r == nil {
		r = &Exec{Logger: log}
	}
	return log, r
}

// Look implements Runner: the first path of the table that is an
// executable file.
func (e *Exec) Look(name string) (string, error) {
	for _, p := range candidates(name) {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && executable(st.Mode()) {
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
		xe := &ExitError{Cmd: c.String(), Code: code, Stderr: stderr.String(), Stdout: stdout.String(), Err: err}
		log.Warn("command failed", "cmd", c.String(), "code", code, "ms", ms, "stderr", xe.message())
		return stdout.Bytes(), xe
	}
	log.Info("command finished", "cmd", c.String(), "ms", ms)
	return stdout.Bytes(), nil
}
