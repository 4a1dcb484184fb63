package service

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"

	"github.com/prewarm/prewarm/windows/internal/sddl"
)

// IsWindowsService reports whether the process runs under the SCM.
func IsWindowsService() (bool, error) { return svc.IsWindowsService() }

// IgnoreConsoleSignals stops the Go runtime from turning console control
// events (CTRL_C, CTRL_BREAK, CTRL_CLOSE, CTRL_LOGOFF, CTRL_SHUTDOWN) into
// os.Interrupt or SIGTERM and so from ending the process on them. Under the
// SCM a service gets CTRL_SHUTDOWN_EVENT (and logoff events) as well as the
// SCM's own stop or shutdown request; reacting to the signal races the
// orderly stop (the SIGTERM-before-Shutdown race Google's guest agent
// documents). Call it only when IsWindowsService says so: an agent run
// from a console should still stop on Ctrl+C.
func IgnoreConsoleSignals() {
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
}

// OpenEventLog opens the Event Log source Name and returns a handler for
// it and the function that closes it. The source must be registered (the
// MSI does, and so does `prewarm-agent install` through kardianos); when it
// is not, InstallEventSource registers it.
func OpenEventLog(level slog.Leveler) (*EventLogHandler, func() error, error) {
	l, err := eventlog.Open(Name)
	if err != nil {
		return nil, nil, fmt.Errorf("open event log source %s: %w", Name, err)
	}
	return NewEventLogHandler(l, &slog.HandlerOptions{Level: level}), l.Close, nil
}

// InstallEventSource registers Name as an Application log source with
// EventCreate.exe as its message file; an existing registration is kept.
func InstallEventSource() error {
	err := eventlog.InstallAsEventCreate(Name, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !isExists(err) {
		return fmt.Errorf("register event source %s: %w", Name, err)
	}
	return nil
}

// RemoveEventSource removes the registration.
func RemoveEventSource() error { return eventlog.Remove(Name) }

func isExists(err error) bool {
	// InstallAsEventCreate reports an existing registration as
	// "<key> registry key already exists".
	return strings.Contains(err.Error(), "already exists")
}

// DataDir returns %ProgramData%\Prewarm, where the status log
// (status.jsonl) and status.json live.
func DataDir() string {
	p := os.Getenv("ProgramData")
	if p == "" {
		p = `C:\ProgramData`
	}
	return filepath.Join(p, "Prewarm")
}

// EnsureDataDir creates DataDir (if needed) and gives it its ACL:
// Administrators and SYSTEM full control, Users read, inherited by the
// files in it, and no other entries.
func EnsureDataDir() (string, error) {
	dir := DataDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	d := sddl.ProgramDataDir()
	sd, err := windows.SecurityDescriptorFromString(d.String())
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", d, err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return "", err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return "", err
	}
	info := windows.SECURITY_INFORMATION(windows.OWNER_SECURITY_INFORMATION | windows.DACL_SECURITY_INFORMATION | windows.PROTECTED_DACL_SECURITY_INFORMATION)
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, info, owner, nil, dacl, nil); err != nil {
		return "", fmt.Errorf("set ACL of %s: %w", dir, err)
	}
	return dir, nil
}
