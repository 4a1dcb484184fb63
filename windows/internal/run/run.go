package run

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Cmd is one command line.
type Cmd struct {
	Path string
	Args []string
}

func (c Cmd) String() string {
	parts := append([]string{c.Path}, c.Args...)
	for i, p := range parts {
		if strings.ContainsAny(p, " \t\"") {
			parts[i] = fmt.Sprintf("%q", p)
		}
	}
	return strings.Join(parts, " ")
}

// Runner runs a command and returns its combined output. A non-zero exit is
// an error that includes the output.
type Runner interface {
	Run(ctx context.Context, c Cmd) ([]byte, error)
}

// Exec runs commands with os/exec, logging each as started, finished or
// failed with the exact command line.
type Exec struct {
	Log *slog.Logger
}

// Run implements Runner.
func (e Exec) Run(ctx context.Context, c Cmd) ([]byte, error) {
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	log.Info("command started", "cmd", c.String())
	out, err := exec.CommandContext(ctx, c.Path, c.Args...).CombinedOutput()
	ms := time.Since(start).Milliseconds()
	if err != nil {
		log.Warn("command failed", "cmd", c.String(), "ms", ms, "err", err, "output", string(bytes.TrimSpace(out)))
		return out, fmt.Errorf("run %s: %w: %s", c, err, bytes.TrimSpace(out))
	}
	log.Info("command finished", "cmd", c.String(), "ms", ms)
	return out, nil
}

// System32 returns the path of a program in Windows' system directory,
// %SystemRoot%\System32 (C:\Windows\System32 when SystemRoot is unset).
func System32(program string) string {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	return strings.TrimRight(root, `\`) + `\System32\` + program
}

// Tzutil is the path of tzutil.exe.
func Tzutil() string { return System32("tzutil.exe") }

// Netsh is the path of netsh.exe.
func Netsh() string { return System32("netsh.exe") }
