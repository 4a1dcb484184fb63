// Package service holds the reusable Windows pieces of running the agent as
// a service, for cmd/prewarm-agent to call: an slog.Handler that writes to
// the Windows Event Log, creation of %ProgramData%\Prewarm with its ACL
// (Administrators and SYSTEM write, Users read), ignoring console control
// signals while running under the SCM, and the kardianos/service options
// for automatic start with recovery actions. The handler and the options
// are portable (tested on every OS); the rest is in _windows.go files.
package service
