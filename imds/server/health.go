package server

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// A shared store (e.g. etcd) can become unreachable while the server keeps
// running. Its feed reports that (store.EventHealth, follow.go) through
// SetStoreHealth; the server then keeps serving guests the last
// documents it knows, says so on /healthz and in
// prewarm_imds_store_degraded, and answers writes the store refuses with
// 503 and the error object.

// storeHealth is the shared store's reachability as last reported.
type storeHealth struct {
	err atomic.Pointer[error]
}

// unavailable is how the server recognises a store error that means
// "cannot reach the shared store" without importing the store's package
// (etcdstore.UnavailableError implements it).
type unavailable interface{ Unavailable() bool }

func isUnavailable(err error) bool {
	var u unavailable
	return errors.As(err, &u) && u.Unavailable()
}

// storeUnavailable is the API's answer to a write the shared store could
// not take.
func storeUnavailable(err error) *Error {
	return errorf(http.StatusServiceUnavailable, "store unavailable, serving read-only: %v", err)
}

// SetStoreHealth records whether the shared store is reachable: nil means
// it is, an error says why not.
func (s *Server) SetStoreHealth(err error) {
	if err == nil {
		if s.health.err.Swap(nil) != nil {
			s.log.Info("store reachable again")
		}
		return
	}
	if s.health.err.Swap(&err) == nil {
		s.log.Warn("store unavailable; serving the last known documents read-only", "err", err)
	}
}

// storeProber is a store that can say whether it can take a write now
// (store.Bolt: a small write, and free space, checked at most every few
// seconds; a failed write shows at once).
type storeProber interface {
	Probe(ctx context.Context) error
}

// writeHealth is nil while the server's own store can write, else why
// not: /healthz answers 503 with it. A shared store's unreachability is
// StoreHealth instead (degraded, still 200: the whole fleet shares it).
func (s *Server) writeHealth(ctx context.Context) error {
	p, ok := s.st.(storeProber)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.Probe(ctx)
}

// StoreHealth returns nil while the store is reachable, else why not.
func (s *Server) StoreHealth() error {
	if p := s.health.err.Load(); p != nil {
		return *p
	}
	return nil
}
