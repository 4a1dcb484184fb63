package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/linux/platform"
)

func newPlatform(f *runFlags, log *slog.Logger) (agent.Platform, error) {
	return platform.New(platform.Options{
		Root:       f.root,
		StateDir:   f.stateDir,
		DHCPClient: f.dhcpClient,
		Interfaces: f.interfaceList(),
		Logger:     log,
		// The image builder's list (packaging/README.md).
		ManageExistingUsers: f.manageUserList(),
	})
}

// osPrepare adds what the OS needs before the agent starts; nothing on Linux
// (systemd collects stderr into the journal).
func osPrepare(h slog.Handler) (slog.Handler, error) { return h, nil }

// osServiceOptions adds OS-specific kardianos options; none on Linux.
func osServiceOptions(map[string]any) {}
