package publishdir

import "syscall"

// openFlags open a publish file's reparse point (a symbolic link
// or junction) itself instead of its target, so that the regular-file
// check refuses it.
const openFlags = syscall.FILE_FLAG_OPEN_REPARSE_POINT
