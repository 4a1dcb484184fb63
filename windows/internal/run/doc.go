// Package run is the Windows agent's one seam for external commands
// (tzutil, netsh): every command goes through a Runner, so tests fake the
// Runner, and the paths of the commands live here only. The package is
// portable; the paths are those of a Windows system directory.
package run
