// Package atomicfile writes files so that a reader, or a crash, sees either
// the old content or the new, never a part: a temporary file in the same
// directory, written, flushed and closed, then renamed over the name. It is
// the one implementation both agents and both platform adapters use; what
// differs per OS or per file (an owner, an ACL, a check such as
// visudo -cf) comes in through Options.Prepare.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Options say how a file is written.
type Options struct {
	// Mode is the file's permission bits (on Windows, as with os.Chmod,
	// only the owner's write bit counts: it is the read-only attribute).
	Mode fs.FileMode
	// Prepare, when set, runs on the complete temporary file, closed,
	// before it takes the file's name: it gives the file its owner or its
	// ACL, or checks it. An error leaves the file as it was.
	Prepare func(tmp string) error
	// SyncDir makes the rename itself durable by flushing the directory
	// (a no-op on Windows, where a directory cannot be flushed).
	SyncDir bool
}

// Write writes data to path atomically. The temporary file is named
// ".<base of path>.prewarm-*" in path's directory, created 0600 and
// removed on every failure. Errors name path.
func Write(path string, data []byte, o Options) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".prewarm-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(o.Mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.Prepare != nil {
		if err := o.Prepare(tmp); err != nil {
			os.Remove(tmp)
			done = true
			return err
		}
	}
	if err := rename(tmp, path); err != nil {
		os.Remove(tmp)
		done = true
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	if o.SyncDir {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("write %s: sync %s: %w", path, dir, err)
		}
	}
	return nil
}
