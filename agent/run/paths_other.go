//go:build !linux && !windows

package run

import "io/fs"

// The agent runs on Linux and Windows only; elsewhere no command is known.
func candidates(string) []string { return nil }

func executable(fs.FileMode) bool { return false }
