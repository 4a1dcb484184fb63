package main

import (
	"os"
	"path/filepath"
	"runtime"
)

type dirs struct{ state, log, run, root string }

// defaultDirs are the agent's directories on this OS: the FHS places on
// Linux (and other Unix), %ProgramData%\Prewarm for all of them on Windows.
func defaultDirs() dirs {
	if runtime.GOOS == "windows" {
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		d := filepath.Join(pd, "Prewarm")
		return dirs{state: d, log: d, run: d, root: ""}
	}
	return dirs{state: "/var/lib/prewarm", log: "/var/log/prewarm", run: "/run/prewarm", root: "/"}
}
