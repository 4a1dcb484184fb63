package guestnet

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/internal/syncbuf"
)

// served records the binder's Serve calls; the closer it hands back
// closes the listener, as an *http.Server would.
type served struct {
	mu    sync.Mutex
	calls []*serveCall
}

type serveCall struct {
	dev          string
	byDeviceOnly bool
	ln           net.Listener
	closed       bool
}

func (s *served) serve(ln net.Listener, dev string, byDeviceOnly bool) io.Closer {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &serveCall{dev: dev, byDeviceOnly: byDeviceOnly, ln: ln}
	s.calls = append(s.calls, c)
	return closerFunc(func() error {
		s.mu.Lock()
		c.closed = true
		s.mu.Unlock()
		return ln.Close()
	})
}

// of returns a copy of the calls for dev, oldest first.
func (s *served) of(dev string) []serveCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []serveCall
	for _, c := range s.calls {
		if c.dev == dev {
			out = append(out, *c)
		}
	}
	return out
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// TestBinderFollowsLinks: in a network namespace of its own (veth pairs
// stand for the hypervisor's tap devices), the binder
// binds a wanted device when it appears, rebinds it when it is re-created,
// closes its listener when the device goes or nobody wants it any more,
// and learns of the links from their notifications (linux/nl), not by
// polling.
func TestBinderFollowsLinks(t *testing.T) {
	if !netlab.InGuest() {
		netlab.RequireRoot(t, "ip")
		netlab.NewNetns(t, netlab.Unique("pwgn")).RunTest(t, "TestBinderFollowsLinks", 60*time.Second)
		return
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "lo", "up")
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs syncbuf.Buffer
	var rec served
	var mu sync.Mutex
	registered := []string{"pwg0"}
	b := ln.StartBinder(BinderOptions{
		Static: []string{"pwg1"},
		Registered: func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(registered)
		},
		Serve:  rec.serve,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	defer b.Stop()
	until := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; !ok(); i++ {
			if i > 1000 {
				t.Fatalf("%s: never (bound %v)", what, b.Bound())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	bound := func(want ...string) func() bool {
		return func() bool { return slices.Equal(b.Bound(), want) }
	}

	until("nothing bound while the devices are missing", bound())
	ip("link", "add", "pwg0", "type", "veth", "peer", "name", "pwg0p")
	until("pwg0 bound once it appears", bound("pwg0"))
	ip("link", "add", "pwg1", "type", "veth", "peer", "name", "pwg1p")
	until("pwg1 bound once it appears", bound("pwg0", "pwg1"))
	if c := rec.of("pwg0"); len(c) != 1 || !c[0].byDeviceOnly {
		t.Fatalf("pwg0 (registered) served %+v, want once, by device only", c)
	}
	if c := rec.of("pwg1"); len(c) != 1 || c[0].byDeviceOnly {
		t.Fatalf("pwg1 (static) served %+v, want once, not by device only", c)
	}

	// Re-created: a new ifindex, so a new listener.
	ip("link", "del", "pwg0")
	ip("link", "add", "pwg0", "type", "veth", "peer", "name", "pwg0p")
	until("pwg0 rebound after it was re-created", func() bool {
		c := rec.of("pwg0")
		return len(c) == 2 && c[0].closed && !c[1].closed
	})
	// Gone: its listener closes.
	ip("link", "del", "pwg1")
	until("pwg1's listener closed once it is gone", func() bool {
		c := rec.of("pwg1")
		return len(c) == 1 && c[0].closed
	})
	until("pwg0 alone bound", bound("pwg0"))
	// Nobody wants it: closed at the next reconcile.
	mu.Lock()
	registered = nil
	mu.Unlock()
	b.Update()
	until("pwg0's listener closed once unregistered", func() bool {
		c := rec.of("pwg0")
		return len(c) == 2 && c[1].closed
	})
	if strings.Contains(logs.String(), "every few seconds") {
		t.Fatalf("the binder fell back to polling:\n%s", logs.String())
	}
}
