package platform

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/dhcp"
	"github.com/prewarm/prewarm/linux/netmon"
	"github.com/prewarm/prewarm/linux/network"
	"github.com/prewarm/prewarm/linux/system"
)

// DefaultStateDir is where the platform keeps its records when
// Options.StateDir is empty.
const DefaultStateDir = "/var/lib/prewarm"

// Options configure the Linux platform.
type Options struct {
	// Root is the target root every file write is relative to ("/" on a
	// real machine, a scratch directory in tests and image builds).
	Root string
	// StateDir holds the platform's own records (network.json: the
	// addresses and routes the agent added; dhcp-builtin.json: the
	// built-in DHCP client's leases), already relative to nothing: an
	// absolute host path. Default DefaultStateDir. The exception is
	// users.json, the accounts the agent created: it belongs with the
	// account database it describes, so it lives at StateDir inside Root
	// (the same place when Root is "/").
	StateDir string
	// DHCPClient overrides detection of the DHCP client ("" = detect;
	// "dhclient", "dhcpcd", "udhcpc", "networkd", "networkmanager", "builtin").
	DHCPClient string
	// Interfaces restricts the managed interfaces (nil = every non-loopback NIC).
	Interfaces []string
	// ManageExistingUsers are the accounts that existed before the agent
	// that the image builder lets it manage (--manage-existing-users). The
	// users step manages no other account it did not create, and never a
	// system account.
	ManageExistingUsers []string
	Logger              *slog.Logger
	// Offline, when set, treats Root as an image that is not running even
	// when it is "/": no kernel hostname, no hostnamectl, timedatectl or
	// resolvectl. By default Root "/" (or "") is the live system and any
	// other root is offline.
	Offline bool
	// LinkPollInterval is the period of the /sys/class/net fallback of the
	// link watcher, used only when netlink multicast is unavailable
	// (default 1s).
	LinkPollInterval time.Duration
}

// New returns the Linux platform.
func New(opts Options) (agent.Platform, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	if !filepath.IsAbs(root) {
		return agent.Platform{}, fmt.Errorf("linux platform: root %q is not an absolute path", root)
	}
	stateDir := opts.StateDir
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	live := filepath.Clean(root) == "/" && !opts.Offline
	runner := &run.Exec{Logger: log.With("component", "run")}
	d, err := dhcp.New(dhcp.Options{Client: opts.DHCPClient, Interfaces: opts.Interfaces, StateDir: stateDir, Runner: runner, Logger: log})
	if err != nil {
		return agent.Platform{}, fmt.Errorf("linux platform: %w", err)
	}
	if live {
		// With --dhcp-client=builtin nothing else leases the interfaces at
		// boot (dhcp.Renewer.AcquireAtStart; a no-op for other clients).
		_ = d.AcquireAtStart(context.Background(), 10*time.Second) // logged there
	}
	sys := system.New(system.Options{Root: root, Runner: runner, Logger: log, Live: live, StateDir: stateDir, ManageExistingUsers: opts.ManageExistingUsers})
	return agent.Platform{
		Links:    netmon.New(netmon.Options{Interfaces: opts.Interfaces, Logger: log, PollInterval: opts.LinkPollInterval}),
		DHCP:     d,
		Hostname: sys,
		Timezone: sys,
		Users:    sys,
		HostKeys: sys,
		Network:  network.New(network.Options{Root: root, StateDir: stateDir, Runner: runner, Logger: log, Live: live}),
	}, nil
}
