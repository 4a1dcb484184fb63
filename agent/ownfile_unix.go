//go:build !windows

package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openOwnFile opens path with flag (creating it with perm if flag says so)
// and returns it only if it is a regular file of this agent's own with a
// single link. O_NOFOLLOW refuses a symbolic link as the last component,
// and O_NONBLOCK keeps a FIFO from blocking the open; both are checked on
// the open file, so nothing can be swapped in between.
func openOwnFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("open %s: %w: a symbolic link", path, errNotOwnFile)
	}
	if errors.Is(err, syscall.ENXIO) {
		return nil, fmt.Errorf("open %s: %w: a FIFO or socket", path, errNotOwnFile)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%w: not a regular file (%s)", errNotOwnFile, fi.Mode().Type())
	case st != nil && st.Nlink != 1:
		err = fmt.Errorf("%w: %d hard links", errNotOwnFile, st.Nlink)
	case st != nil && int(st.Uid) != os.Geteuid():
		err = fmt.Errorf("%w: owned by uid %d, not this agent's %d", errNotOwnFile, st.Uid, os.Geteuid())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
