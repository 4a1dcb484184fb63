package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/prewarm/prewarm/windows/platform"
	winsvc "github.com/prewarm/prewarm/windows/service"
)

// platformOptions and newOSPlatform are the Windows platform's, for
// newPlatform (platform.go).
type platformOptions = platform.Options

var newOSPlatform = platform.New

// osPrepare readies the agent for the Windows service manager: under the
// SCM console signals are ignored (the SCM's stop is the only stop; Google's
// guest agent documents a CTRL_SHUTDOWN-before-Stop race), the data
// directory gets its ACL (SYSTEM/Administrators write, Users read), the log
// also goes to the Event Log, and the restart-on-failure actions the MSI
// cannot set are ensured. Failures here are reported, never fatal.
func osPrepare(h slog.Handler) (slog.Handler, error) {
	var errs []error
	underSCM, err := winsvc.IsWindowsService()
	if err != nil {
		errs = append(errs, fmt.Errorf("detect the service manager: %w", err))
	}
	if underSCM {
		winsvc.IgnoreConsoleSignals()
	}
	if _, err := winsvc.EnsureDataDir(); err != nil {
		errs = append(errs, fmt.Errorf("prepare the data directory: %w", err))
	}
	if eh, _, err := winsvc.OpenEventLog(slog.LevelInfo); err != nil {
		errs = append(errs, fmt.Errorf("open the Event Log: %w", err))
	} else {
		// The Event Log stays open for the life of the process.
		h = slog.NewMultiHandler(h, eh)
	}
	if underSCM {
		if err := winsvc.EnsureRecoveryActions(); err != nil {
			errs = append(errs, fmt.Errorf("set the service's recovery actions: %w", err))
		}
	}
	return h, errors.Join(errs...)
}

// osServiceOptions adds the Windows service settings: automatic start and
// restart on failure.
func osServiceOptions(kv map[string]any) { maps.Copy(kv, winsvc.KardianosOptions()) }
