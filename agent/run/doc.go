// Package run is the one seam through which both platforms run external
// commands (Linux: useradd, chpasswd, hostnamectl, dhclient...; Windows:
// tzutil, netsh). A command is named, never given as a path: the paths of
// every command live in this package, one table per OS (paths_linux.go,
// paths_windows.go). Tests replace the Runner with a fake.
package run
