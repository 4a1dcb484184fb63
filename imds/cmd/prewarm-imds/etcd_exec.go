//go:build !etcd && !windows

package main

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/prewarm/prewarm/shared/cli"
)

// openEtcd replaces this process with prewarm-imds-etcd, given the same
// arguments and environment; the open files not marked close-on-exec (a
// socket systemd passed) go with it, and $NOTIFY_SOCKET still names
// systemd's, so the unit is unchanged. It returns only with an error.
func (f *storeFlags) openEtcd(log *slog.Logger) (openedStore, error) {
	path, err := findEtcdBinary()
	if err != nil {
		return nil, err
	}
	log.Debug("store etcd: handing over to "+etcdBinary, "path", path)
	err = syscall.Exec(path, os.Args, os.Environ())
	return nil, cli.Errorf(cli.ExitFailure, "--store etcd: cannot run %s: %v", path, cli.Cause(err)).
		WithHint("check that %s is an executable built from this release (make build)", path)
}
