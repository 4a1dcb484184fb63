//go:build !etcd

package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/shared/cli"
)

// openEtcd fails: Windows has no execve to hand the process over, so
// prewarm-imds-etcd must be started in place of prewarm-imds.
func (f *storeFlags) openEtcd(*slog.Logger) (openedStore, error) {
	return nil, cli.Errorf(cli.ExitUsage, "--store etcd is served by %s, not by this prewarm-imds", etcdBinary).
		WithHint("run %s serve with the same arguments (go build -tags etcd -o %s.exe ./imds/cmd/prewarm-imds)", etcdBinary, etcdBinary)
}
