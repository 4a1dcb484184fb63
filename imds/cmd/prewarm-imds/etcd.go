package main

import (
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/cli"
)

// The etcd store lives in its own binary, prewarm-imds-etcd: this command
// package built with the build tag etcd (make build builds both). Only it
// links the etcd client, gRPC and protobuf, whose package-level registries
// cost several MB of RSS at start even when unused, so the bbolt-only
// prewarm-imds stays lean. prewarm-imds serve --store etcd replaces itself
// (execve, same arguments, environment and open files) with
// prewarm-imds-etcd found beside its own executable, else on $PATH
// (etcd_exec.go); prewarm-imds-etcd opens the etcd store itself
// (etcd_linked.go).

// etcdBinary is the name of the binary that serves --store etcd.
const etcdBinary = "prewarm-imds-etcd"

// defaultEtcdPrefix is etcdstore.DefaultPrefix, kept here so the lean
// binary need not link etcdstore (a test of the etcd build checks they
// agree).
const defaultEtcdPrefix = "/prewarm/"

// openedStore is a store serve opened and must close.
type openedStore interface {
	store.Store
	Close() error
}

// storeFlags are serve's flags that choose and configure the store.
type storeFlags struct {
	kind      *string
	endpoints *[]string
	prefix    *string
	hostID    *string
	cert, key *string
	ca        *string
	user      *string
	pwFile    *string
}

func addStoreFlags(fs *pflag.FlagSet) *storeFlags {
	f := &storeFlags{
		kind:   fs.String("store", "bolt", "store: bolt (embedded, in --data-dir) or etcd (shared by a fleet of hosts, docs/etcd.md)"),
		prefix: fs.String("etcd-prefix", defaultEtcdPrefix, "key prefix in etcd"),
		hostID: fs.String("host-id", "", "this host's id in the fleet (required with --store etcd)"),
		cert:   fs.String("etcd-cert", "", "TLS client certificate file for etcd"),
		key:    fs.String("etcd-key", "", "TLS client key file for etcd"),
		ca:     fs.String("etcd-ca", "", "CA file that verifies etcd's certificates"),
		user:   fs.String("etcd-user", "", "etcd user name (with --etcd-password-file)"),
		pwFile: fs.String("etcd-password-file", "", "file holding the etcd user's password"),
	}
	f.endpoints = fs.StringSlice("etcd-endpoints", nil, "etcd client URLs (repeatable, or comma separated)")
	return f
}

// open returns the store to pass to server.New: nil for the embedded one
// (the server opens it in --data-dir), else the etcd store. In the lean
// binary --store etcd does not return: it execs prewarm-imds-etcd, or fails
// naming it.
func (f *storeFlags) open(log *slog.Logger) (openedStore, error) {
	switch *f.kind {
	case "bolt", "":
		if len(*f.endpoints) > 0 || *f.hostID != "" {
			return nil, cli.Usagef("--etcd-endpoints and --host-id need --store etcd")
		}
		return nil, nil
	case "etcd":
	default:
		return nil, cli.Usagef("--store %q: want bolt or etcd", *f.kind)
	}
	if len(*f.endpoints) == 0 || *f.hostID == "" {
		return nil, cli.Usagef("--store etcd needs --etcd-endpoints and --host-id")
	}
	return f.openEtcd(log)
}
