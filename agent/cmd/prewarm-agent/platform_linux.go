package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/linux/platform"
)

// platformOptions and newOSPlatform are the Linux platform's, for
// newPlatform (platform.go).
type platformOptions = platform.Options

var newOSPlatform = platform.New

// osPrepare adds what the OS needs before the agent starts; nothing on Linux
// (systemd collects stderr into the journal).
func osPrepare(h slog.Handler) (slog.Handler, error) { return h, nil }

// osServiceOptions adds OS-specific kardianos options; none on Linux.
func osServiceOptions(map[string]any) {}
