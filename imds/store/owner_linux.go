package store

import (
	"os"
	"syscall"
)

// copyOwner gives dst the owner and group of src, so that a store that
// root recovered stays readable by the service's own user. Only root can
// give a file away; anyone else's files already belong to them.
func copyOwner(dst, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(dst, int(st.Uid), int(st.Gid))
}
