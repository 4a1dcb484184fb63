package fsx

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openat2 is unix.Openat2; tests replace it to take the fallback.
var openat2 = unix.Openat2

// ErrNotDir is returned by OpenDirNoFollow when the last component of the
// path is not a directory (a symlink, a file, a device).
var ErrNotDir = errors.New("not a directory (a symlink?)")

// OpenDirNoFollow opens directory p (absolute, as seen inside the target)
// under root and returns its descriptor, for the *at system calls. The last
// component of p is opened with O_NOFOLLOW, so a symlink there is refused
// with ErrNotDir rather than followed. Symlinks in the components before it
// are resolved inside root (openat2 RESOLVE_IN_ROOT) where the kernel has
// openat2; on older kernels they are followed as a path under root. p
// must name a directory below root, not root itself.
func OpenDirNoFollow(root, p string) (int, error) {
	if root == "" {
		root = "/"
	}
	clean := filepath.Clean("/" + p)
	if clean == "/" {
		return -1, fmt.Errorf("open %s: %w", p, ErrNotDir)
	}
	parent, base := filepath.Dir(clean), filepath.Base(clean)
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	pfd, err := openat2(rootfd, "."+parent, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// No openat2 (before Linux 5.6, or filtered by seccomp).
		pfd, err = unix.Openat(rootfd, "."+parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", parent, err)
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("open %s: %w", clean, ErrNotDir)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", clean, err)
	}
	return fd, nil
}
