package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore"
)

// storeFlags are serve's flags that choose and configure the store.
type storeFlags struct {
	kind      *string
	endpoints multiFlag
	prefix    *string
	hostID    *string
	cert, key *string
	ca        *string
	user      *string
	pwFile    *string
}

func addStoreFlags(fs *flag.FlagSet) *storeFlags {
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
	fs.Var(&f.endpoints, "etcd-endpoints", "etcd client URLs (repeatable, or comma separated)")
	return f
}

// etcdBackend is a running etcd store and the follower that feeds the
// server's index from it.
type etcdBackend struct {
	st     *etcdstore.Store
	cancel context.CancelFunc
	done   chan struct{}
	// ready is closed at the first resync, or when etcd is found
	// unreachable (the server then starts empty and degraded, and fills
	// its index when etcd answers).
	ready chan struct{}
}

// followedStore is the etcd store as the server sees it: its index comes
// from the follower's first resync (server.Options.Followed), so loading
// at start is left to that, and a host started while etcd is down still
// starts.
type followedStore struct{ *etcdstore.Store }

// Load implements store.Store: nothing; see followedStore.
func (followedStore) Load(context.Context) ([]store.Record, error) { return nil, nil }

// open returns the store to pass to server.New: nil for the embedded one
// (the server opens it in --data-dir), else the etcd store.
func (f *storeFlags) open(log *slog.Logger) (*etcdstore.Store, error) {
	switch *f.kind {
	case "bolt", "":
		if len(f.endpoints) > 0 || *f.hostID != "" {
			return nil, fmt.Errorf("%w: --etcd-endpoints and --host-id need --store etcd", errUsage)
		}
		return nil, nil
	case "etcd":
	default:
		return nil, fmt.Errorf("%w: --store %q: want bolt or etcd", errUsage, *f.kind)
	}
	if len(f.endpoints) == 0 || *f.hostID == "" {
		return nil, fmt.Errorf("%w: --store etcd needs --etcd-endpoints and --host-id", errUsage)
	}
	return etcdstore.Open(etcdstore.Config{
		Endpoints:    f.endpoints,
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

// follow feeds srv's index from st's change stream until stop.
func follow(st *etcdstore.Store, srv *server.Server, log *slog.Logger) *etcdBackend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &etcdBackend{st: st, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	var once sync.Once
	go func() {
		defer close(b.done)
		st.Follow(ctx, 0, func(ev etcdstore.Event) {
			if ev.Type == etcdstore.EventResync || ev.Type == etcdstore.EventHealth {
				defer once.Do(func() { close(b.ready) })
			}
			switch ev.Type {
			case etcdstore.EventResync:
				var recs []store.Record
				for _, in := range ev.Instances {
					if in.Local {
						recs = append(recs, in.Record)
					}
				}
				srv.Resync(recs)
				log.Info("index resynced from etcd", "revision", ev.Revision, "instances", len(recs), "fleet", len(ev.Instances))
			case etcdstore.EventChanged:
				if ev.Instance.Local {
					srv.Sync(ev.Instance.Record)
				} else {
					srv.Forget(ev.ID)
				}
			case etcdstore.EventDeleted:
				srv.Forget(ev.ID)
			case etcdstore.EventStatus:
				srv.SyncStatus(ev.ID, *ev.Status)
			case etcdstore.EventHealth:
				if ev.Degraded {
					err := ev.Err
					if err == nil {
						err = errors.New("etcd unavailable")
					}
					srv.SetStoreHealth(err)
				} else {
					srv.SetStoreHealth(nil)
				}
			}
		})
	}()
	return b
}

// stop ends the follower and closes the store (after server.Shutdown).
func (b *etcdBackend) stop() error {
	b.cancel()
	<-b.done
	return b.st.Close()
}
