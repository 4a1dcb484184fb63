//go:build etcd

package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/imds/store/etcdstore"
)

// etcdLinked says this binary is prewarm-imds-etcd: it opens the etcd
// store itself.
const etcdLinked = true

// openEtcd opens the etcd store of the flags.
func (f *storeFlags) openEtcd(log *slog.Logger) (openedStore, error) {
	s, err := etcdstore.Open(etcdstore.Config{
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
	if err != nil {
		return nil, err
	}
	return s, nil
}
