package fsx

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/prewarm/prewarm/agent/atomicfile"
)

// Join returns path p (absolute, as seen inside the target) under root.
func Join(root, p string) string {
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, filepath.Clean("/"+p))
}

// WriteOptions say how a file is written.
type WriteOptions struct {
	Mode fs.FileMode
	// UID and GID own the file when Chown is set.
	Chown    bool
	UID, GID int
	// Validate, when set, checks the complete temporary file before it is
	// renamed into place (e.g. visudo -cf).
	Validate func(tmpPath string) error
}

// WriteFile writes data to path atomically (package atomicfile), the
// owner set before the file takes its name. It reports whether the file
// changed: when path already holds exactly data with the same mode (and
// owner, with Chown), nothing is written.
func WriteFile(path string, data []byte, o WriteOptions) (bool, error) {
	if same(path, data, o) {
		return false, nil
	}
	err := atomicfile.Write(path, data, atomicfile.Options{Mode: o.Mode, Prepare: func(tmp string) error {
		if o.Chown {
			if err := os.Lchown(tmp, o.UID, o.GID); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
		if o.Validate != nil {
			if err := o.Validate(tmp); err != nil {
				return fmt.Errorf("check %s: %w", path, err)
			}
		}
		return nil
	}})
	return err == nil, err
}

func same(path string, data []byte, o WriteOptions) bool {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != o.Mode.Perm() {
		return false
	}
	if o.Chown {
		uid, gid, ok := owner(st)
		if !ok || uid != o.UID || gid != o.GID {
			return false
		}
	}
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}

// Symlink makes path a symlink to target atomically, reporting whether it
// changed anything.
func Symlink(target, path string) (bool, error) {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".prewarm-link")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("link %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("link %s: %w", path, err)
	}
	return true, nil
}

// Remove removes path, reporting whether it existed.
func Remove(path string) (bool, error) {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", path, err)
	}
	return true, nil
}
