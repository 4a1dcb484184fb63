//go:build !linux && !windows

package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
)

// newPlatform on an OS without an adapter: every step fails, loudly.
func newPlatform(*runFlags, *slog.Logger) (agent.Platform, error) {
	return agent.Unsupported(), nil
}

func osPrepare(h slog.Handler) (slog.Handler, error) { return h, nil }

func osServiceOptions(map[string]any) {}
