//go:build unix

package server

import "syscall"

// publishOpenFlags open a publish file without following a symbolic link
// (the open fails instead), without blocking on a FIFO that has no writer,
// and without making a terminal the process's controlling terminal.
const publishOpenFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY
