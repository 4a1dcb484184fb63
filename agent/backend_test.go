package agent

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
)

// newGuestBackend starts a real in-process prewarm-imds (imds/server, on a
// bbolt store in a temporary directory) with instance vm-1 registered at
// 127.0.0.1, and returns its guest API and a function publishing vm-1's
// config through it.
func newGuestBackend(t *testing.T, opts server.Options) (http.Handler, func(string) int64) {
	opts.DataDir = t.TempDir()
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if _, _, err := srv.Register(context.Background(), "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(doc string) int64 {
		t.Helper()
		g, err := srv.Publish(context.Background(), "vm-1", []byte(doc), nil)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		return g
	}
	return srv.GuestHandler(), publish
}
