package store

import "golang.org/x/sys/unix"

// dropPages is madvise(MADV_DONTNEED) of n bytes of a file mapping at
// addr. An error changes nothing the store relies on, so it is ignored.
func dropPages(addr uintptr, n int64) {
	if n <= 0 {
		return
	}
	unix.Syscall(unix.SYS_MADVISE, addr, uintptr(n), unix.MADV_DONTNEED)
}
