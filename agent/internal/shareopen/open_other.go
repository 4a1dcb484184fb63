//go:build !windows

package shareopen

import "os"

// Open is os.OpenFile: Unix lets an open file be renamed or removed.
func Open(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag, perm)
}
