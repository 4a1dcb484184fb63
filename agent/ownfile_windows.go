package agent

import (
	"fmt"
	"os"
	"syscall"

	"github.com/prewarm/prewarm/agent/internal/shareopen"
)

// openOwnFile opens path with flag (creating it with perm if flag says so)
// and returns it only if it is a regular file with a single link. Windows
// has no O_NOFOLLOW: FILE_FLAG_OPEN_REPARSE_POINT opens a symbolic link,
// junction or other reparse point itself instead of its target, and the
// open handle is then refused if it is one, so nothing is written through
// it. Ownership is the data directory's ACL (winsvc.EnsureDataDir), which
// lets only SYSTEM and Administrators create files there. The file is
// shared for delete as well as read and write (shareopen), so a tenant can
// rotate the status log, and the agent its own, while someone holds it open.
func openOwnFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := shareopen.Open(path, flag|syscall.FILE_FLAG_OPEN_REPARSE_POINT, perm)
	if err != nil {
		return nil, err
	}
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	switch {
	case d.FileAttributes&syscall.FILE_ATTRIBUTE_REPARSE_POINT != 0:
		err = fmt.Errorf("%w: a reparse point (symbolic link or junction)", errNotOwnFile)
	case d.FileAttributes&syscall.FILE_ATTRIBUTE_DIRECTORY != 0:
		err = fmt.Errorf("%w: a directory", errNotOwnFile)
	case d.NumberOfLinks != 1:
		err = fmt.Errorf("%w: %d hard links", errNotOwnFile, d.NumberOfLinks)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
