package system

import (
	"cmp"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/shared/config"
)

// Options configure a System.
type Options struct {
	// Root is the target root ("/" for the running system).
	Root   string
	Runner run.Runner
	Logger *slog.Logger
	// Live says Root is the running system: the kernel hostname is set
	// (in this process's UTS namespace), and hostnamectl/timedatectl are
	// called when systemd is PID 1.
	Live bool
	// ProcDir defaults to /proc (where PID 1 is looked at).
	ProcDir string
	// StateDir is the agent's state directory as seen inside Root
	// (default /var/lib/prewarm). The record of the accounts the agent
	// created (users.json) lives there, inside the target root, next to
	// the account database it describes.
	StateDir string
	// ManageExistingUsers are the accounts that existed before the agent
	// and that the image builder lets it manage all the same. The agent
	// manages no other existing account, and never one of a system range
	// or nobody, listed or not.
	ManageExistingUsers []string
}

// System implements agent.HostnameSetter, agent.TimezoneSetter and
// agent.UserManager.
type System struct {
	o   Options
	log *slog.Logger
}

// New returns a System.
func New(o Options) *System {
	o.Root = cmp.Or(o.Root, "/")
	o.ProcDir = cmp.Or(o.ProcDir, "/proc")
	log, runner := run.Defaults(o.Logger, o.Runner)
	o.Runner = runner
	log = log.With("component", "system")
	for _, n := range o.ManageExistingUsers {
		if !config.ValidUserName(n) || n == "root" {
			// Never matches a user the step accepts; a typo, said once.
			log.Warn("ignoring an invalid name in the list of existing users to manage", "user", n)
		}
	}
	return &System{o: o, log: log}
}

func (s *System) path(p string) string { return fsx.Join(s.o.Root, p) }

// systemdPID1 reports whether systemd runs the live system.
func (s *System) systemdPID1() bool {
	if !s.o.Live {
		return false
	}
	b, err := os.ReadFile(filepath.Join(s.o.ProcDir, "1/comm"))
	return err == nil && strings.TrimSpace(string(b)) == "systemd"
}

// daemonRunning reports whether a process whose comm is comm (the kernel
// cuts it to 15 bytes) runs on a live system. hostnamectl and timedatectl
// are called only for a running systemd-hostnamed / systemd-timedated, to
// tell it at once: both daemons are started on demand by D-Bus and read
// /etc/hostname and /etc/localtime afresh when they start (and on a
// change of the file), so starting one only to say what the agent has
// already written costs a process start and a bus activation (most of a
// second each under TCG, on the claim's critical path) and tells nobody
// anything.
func (s *System) daemonRunning(comm string) bool {
	if !s.o.Live {
		return false
	}
	if len(comm) > 15 {
		comm = comm[:15]
	}
	ents, err := os.ReadDir(s.o.ProcDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n := e.Name(); n == "" || n[0] < '1' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.o.ProcDir, e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return true
		}
	}
	return false
}

// rootArgs are the --root arguments of the shadow tools for a target root.
func (s *System) rootArgs() []string {
	if filepath.Clean(s.o.Root) == "/" {
		return nil
	}
	return []string{"--root", s.o.Root}
}

// available reports whether a command is installed.
func (s *System) available(name string) bool {
	_, err := s.o.Runner.Look(name)
	return err == nil
}

// Errors callers may branch on.
var (
	ErrInvalidHostname = errors.New("invalid hostname")
	ErrUnknownZone     = errors.New("unknown time zone")
	ErrInvalidUser     = errors.New("invalid user")
	ErrSystemAccount   = errors.New("system account")
	// ErrUnmanagedAccount: the account exists, the agent did not create
	// it and the image builder did not list it.
	ErrUnmanagedAccount = errors.New("account not created by the agent")
)

// fileMode returns the mode of an existing file, or def.
func fileMode(path string, def os.FileMode) os.FileMode {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm()
	}
	return def
}
