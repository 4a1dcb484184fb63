//go:build !windows

package atomicfile

import "os"

// rename is os.Rename: Unix replaces a file that is open.
func rename(from, to string) error { return os.Rename(from, to) }
