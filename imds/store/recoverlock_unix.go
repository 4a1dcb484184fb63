//go:build !windows

package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockForRecovery takes a shared flock on the store file, held until the
// returned function runs. A running prewarm-imds holds bbolt's exclusive
// flock on it, so recovery fails fast instead of renaming a file a server
// still writes to; a server starting meanwhile waits for the lock.
func lockForRecovery(path string) (func(), error) {
	// Links are followed (a server follows them too); O_NONBLOCK keeps a
	// FIFO from hanging the open. What does not exist, loops or is no
	// openable file is no store a server runs on: the check reports it.
	// Any other failure (EACCES, EMFILE, EIO) is an error: recovery must
	// not rename a file it could not lock.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENOTDIR) {
			return func() {}, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return func() {}, nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by a running prewarm-imds: stop it first", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
