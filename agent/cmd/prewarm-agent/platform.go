//go:build linux || windows

package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
)

// newPlatform builds the OS's platform from the run flags. The Linux and
// Windows packages' Options name these fields alike (what they mean there
// differs: see each package), so one literal serves both through the
// platformOptions alias of the OS's file.
func newPlatform(f *runFlags, log *slog.Logger) (agent.Platform, error) {
	return newOSPlatform(platformOptions{
		Root:       f.root,
		StateDir:   f.stateDir,
		DHCPClient: f.dhcpClient,
		Interfaces: f.interfaceList(),
		Logger:     log,
		// The image builder's list (packaging/README.md).
		ManageExistingUsers: f.manageUserList(),
	})
}
