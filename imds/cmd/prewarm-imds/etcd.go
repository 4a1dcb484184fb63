package main

import (
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/shared/cli"
)

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
		prefix: fs.String("etcd-prefix", etcdstore.DefaultPrefix, "key prefix in etcd"),
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
// (the server opens it in --data-dir), else the etcd store.
func (f *storeFlags) open(log *slog.Logger) (*etcdstore.Store, error) {
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
	return etcdstore.Open(etcdstore.Config{
		Endpoints:    *f.endpoints,
		Prefix:       *f.prefix,
		HostID:       *f.hostID,
		CertFile:     *f.cert,
		KeyFile:      *f.key,
		CAFile:       *f.ca,
		Username:     *f.user,
		PasswordFile: *f.pwFile,
		Logger:       log.With("store", "etcd"),
	})
}
