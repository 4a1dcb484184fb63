package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/windows/platform"
)

func newPlatform(f *runFlags, log *slog.Logger) (agent.Platform, error) {
	return platform.New(platform.Options{
		Root:       f.root,
		StateDir:   f.stateDir,
		DHCPClient: f.dhcpClient,
		Interfaces: f.interfaceList(),
		Logger:     log,
	})
}
