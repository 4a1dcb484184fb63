//go:build !windows

package main

func defaultDirs() dirs {
	return dirs{state: "/var/lib/prewarm", log: "/var/log/prewarm", run: "/run/prewarm", root: "/"}
}
