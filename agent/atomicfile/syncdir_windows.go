package atomicfile

// syncDir is a no-op: Windows cannot flush a directory, and NTFS journals
// the rename.
func syncDir(string) error { return nil }
