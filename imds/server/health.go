package server

import (
	"errors"
	"net/http"
	"sync/atomic"
)

// A shared store (Options.Followed, e.g. etcd) can become unreachable while
// the server keeps running. The caller following the store reports that
// through SetStoreHealth; the server then keeps serving guests the last
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

// StoreHealth returns nil while the store is reachable, else why not.
func (s *Server) StoreHealth() error {
	if p := s.health.err.Load(); p != nil {
		return *p
	}
	return nil
}
