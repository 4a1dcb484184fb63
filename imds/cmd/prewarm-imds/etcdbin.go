package main

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/prewarm/prewarm/shared/cli"
)

// findEtcdBinary finds prewarm-imds-etcd beside this executable (symlinks
// resolved: /usr/bin in the packages, bin/ of make build), else on $PATH.
func findEtcdBinary() (string, error) {
	var beside string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		beside = filepath.Join(filepath.Dir(exe), etcdBinary)
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return beside, nil
		}
	}
	if p, err := exec.LookPath(etcdBinary); err == nil {
		return p, nil
	}
	where := "$PATH"
	if beside != "" {
		where = beside + " nor on $PATH"
	}
	return "", cli.Errorf(cli.ExitFailure, "--store etcd is served by %s, which is missing (not at %s)", etcdBinary, where).
		WithHint("install %s beside prewarm-imds (the prewarm-imds package ships both in /usr/bin), or build it: make build, or go build -tags etcd -o %s ./imds/cmd/prewarm-imds", etcdBinary, etcdBinary)
}
