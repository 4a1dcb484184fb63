//go:build unix

package publishdir

import "syscall"

// openFlags open a publish file without following a symbolic link
// (the open fails instead), without blocking on a FIFO that has no writer,
// and without making a terminal the process's controlling terminal.
const openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY
