package guestnet

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The binder opens its link watch at the first reconcile that wants a
// device, not at start: with nothing registered it never does.
func TestBinderWatchesLinksOnceADeviceIsWanted(t *testing.T) {
	var watches atomic.Int32
	startLinkWatch = func() (<-chan struct{}, func(), error) {
		watches.Add(1)
		return make(chan struct{}), func() {}, nil
	}
	defer func() { startLinkWatch = watchLinks }()
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	var mu sync.Mutex
	var registered []string
	calls := make(chan struct{}, 100)
	opts := BinderOptions{
		Registered: func() []string {
			mu.Lock()
			defer mu.Unlock()
			select {
			case calls <- struct{}{}:
			default:
			}
			return append([]string(nil), registered...)
		},
		Serve: func(ln net.Listener, _ string, _ bool) io.Closer { return ln },
	}
	b := ln.StartBinder(opts)
	// reconciled waits for the binder to have asked for the registered
	// devices n more times (a reconcile each).
	reconciled := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-calls:
			case <-time.After(10 * time.Second):
				t.Fatal("the binder did not reconcile")
			}
		}
	}
	reconciled(1)
	for range 3 {
		b.Update()
		reconciled(1)
	}
	if n := watches.Load(); n != 0 {
		t.Fatalf("%d link watches with no device wanted, want none", n)
	}
	mu.Lock()
	registered = []string{"pwnosuchdev0"}
	mu.Unlock()
	b.Update()
	reconciled(1)
	b.Update()
	reconciled(1)
	b.Stop()
	if n := watches.Load(); n != 1 {
		t.Fatalf("%d link watches once a device is wanted, want one", n)
	}
}
