//go:build etcd

package main

import (
	"log/slog"

	"github.com/prewarm/prewarm/imds/store/etcdstore"
)

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
