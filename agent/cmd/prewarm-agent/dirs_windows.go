package main

import winsvc "github.com/prewarm/prewarm/windows/service"

// defaultDirs are all winsvc.DataDir, the directory winsvc.EnsureDataDir
// gives its ACL.
func defaultDirs() dirs {
	d := winsvc.DataDir()
	return dirs{state: d, log: d, run: d, root: ""}
}
