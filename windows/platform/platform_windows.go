package platform

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/timezone"
)

// Options configure the Windows platform.
type Options struct {
	// Root is the target root every file write is relative to ("" on a
	// real machine).
	Root string
	// StateDir is the agent's state directory (an absolute host path; ""
	// means %ProgramData%\Prewarm). The platform keeps its own records
	// (which addresses and routes the agent added, which users it made
	// administrators, password verifiers) in its subdirectory "platform",
	// readable by SYSTEM and Administrators only, so the ACL of StateDir
	// itself (Users may read the status log there) stays as it is.
	StateDir string
	// DHCPClient overrides detection of the DHCP client; on Windows only
	// "" and "windows" (the built-in client) are valid.
	DHCPClient string
	// Interfaces restricts the managed interfaces, by alias ("Ethernet") or
	// adapter GUID (nil = every non-loopback, non-tunnel NIC).
	Interfaces []string
	// ManageExistingUsers are the local accounts that existed before the
	// agent that the image builder lets it manage (--manage-existing-users).
	// The users step manages no other account it did not create, and never
	// a built-in one.
	ManageExistingUsers []string
	Logger              *slog.Logger

	// Runner runs the external commands (tzutil, netsh); nil means
	// run.Exec logging to Logger.
	Runner run.Runner
	// DHCPGrace is how long a renewal leaves to Windows' own DHCP client,
	// which renews by itself after a link change (default 10s).
	DHCPGrace time.Duration
	// LinkPoll is the interval of the link watcher's safety-net poll
	// (default 30s; 5s when change notifications are unavailable).
	LinkPoll time.Duration
}

// DefaultDHCPGrace is Options.DHCPGrace's default.
const DefaultDHCPGrace = 10 * time.Second

// New returns the Windows platform.
func New(opts Options) (agent.Platform, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "windows-platform")
	switch opts.DHCPClient {
	case "", "windows", "builtin":
	default:
		return agent.Platform{}, fmt.Errorf("DHCP client %q: Windows has only its built-in client", opts.DHCPClient)
	}
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(programData(), "Prewarm")
	}
	opts.StateDir = filepath.Join(opts.StateDir, "platform")
	if err := ensureStateDir(opts.StateDir); err != nil {
		return agent.Platform{}, err
	}
	runner := opts.Runner
	if runner == nil {
		runner = &run.Exec{Logger: log.With("component", "run")}
	}
	if opts.DHCPGrace <= 0 {
		opts.DHCPGrace = DefaultDHCPGrace
	}
	bounces := &plan.Bounces{} // the link watcher marks, the renewal reads
	network := &networkConfigurator{stateDir: opts.StateDir, runner: runner, log: log.With("step", "network")}
	return agent.Platform{
		Links: &linkWatcher{names: opts.Interfaces, poll: opts.LinkPoll, bounces: bounces, restore: network.Restore,
			log: log.With("step", "links")},
		DHCP:     &dhcpRenewer{names: opts.Interfaces, grace: opts.DHCPGrace, bounces: bounces, log: log.With("step", "dhcp")},
		Hostname: &hostnameSetter{log: log.With("step", "hostname")},
		Timezone: timezone.Setter{Runner: runner, Log: log.With("step", "timezone")},
		Users:    &userManager{root: opts.Root, stateDir: opts.StateDir, manageExisting: opts.ManageExistingUsers, log: log.With("step", "users")},
		Network:  network,
		HostKeys: newHostKeyManager(opts.Root, runner, log.With("step", "sshHostKeys")),
	}, nil
}

// programData returns %ProgramData% (C:\ProgramData when unset).
func programData() string {
	if p := os.Getenv("ProgramData"); p != "" {
		return p
	}
	return `C:\ProgramData`
}

// rooted returns the path of the host path p under root.
func rooted(root, p string) string {
	if root == "" {
		return p
	}
	return filepath.Join(root, strings.TrimPrefix(p, filepath.VolumeName(p)))
}
