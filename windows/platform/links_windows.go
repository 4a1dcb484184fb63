package platform

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
)

type linkWatcher struct {
	names []string
	poll  time.Duration
	log   *slog.Logger
}

// Change notifications arrive on a thread of iphlpapi's through one
// callback (Windows callbacks are a limited resource, so there is exactly
// one); it wakes every open watcher, and each re-reads the adapters.
var (
	watchersMu sync.Mutex
	watchers   = map[chan struct{}]bool{}

	interfaceChangeCallback = sync.OnceValue(func() uintptr {
		return windows.NewCallback(func(_ uintptr, _ *windows.MibIpInterfaceRow, _ uint32) uintptr {
			watchersMu.Lock()
			defer watchersMu.Unlock()
			for ch := range watchers {
				select {
				case ch <- struct{}{}:
				default: // a wake-up is already pending
				}
			}
			return 0
		})
	})
)

// WatchLinks subscribes to NotifyIpInterfaceChange and reports, per managed
// interface, connected/disconnected changes as LinkEvents. If the
// subscription fails it logs why and polls instead.
func (w *linkWatcher) WatchLinks(ctx context.Context) (<-chan agent.LinkEvent, error) {
	wake := make(chan struct{}, 1)
	watchersMu.Lock()
	watchers[wake] = true
	watchersMu.Unlock()
	unregister := func() {
		watchersMu.Lock()
		delete(watchers, wake)
		watchersMu.Unlock()
	}

	poll := w.poll
	var h windows.Handle
	err := windows.NotifyIpInterfaceChange(windows.AF_UNSPEC, interfaceChangeCallback(), nil, false, &h)
	if err != nil {
		w.log.Warn("interface change notifications unavailable; polling", "err", err)
		if poll <= 0 {
			poll = 5 * time.Second
		}
	} else if poll <= 0 {
		poll = 30 * time.Second
	}

	initial, err := w.snapshot()
	if err != nil {
		if h != 0 {
			windows.CancelMibChangeNotify2(h)
		}
		unregister()
		return nil, err
	}
	t := linktrack.New()
	t.Seed(initial)
	out := make(chan agent.LinkEvent, 16)
	go func() {
		defer close(out)
		defer unregister()
		if h != 0 {
			// CancelMibChangeNotify2 waits for a running callback.
			defer windows.CancelMibChangeNotify2(h)
		}
		tick := time.NewTicker(poll)
		defer tick.Stop()
		var queue []agent.LinkEvent
		for {
			var send chan<- agent.LinkEvent
			var next agent.LinkEvent
			if len(queue) > 0 {
				send, next = out, queue[0]
			}
			select {
			case <-ctx.Done():
				return
			case send <- next:
				queue = queue[1:]
				continue
			case <-wake:
			case <-tick.C:
			}
			cur, err := w.snapshot()
			if err != nil {
				w.log.Warn("read interfaces", "err", err)
				continue
			}
			queue = linktrack.Bound(append(queue, t.Sync(cur)...))
		}
	}()
	return out, nil
}

// snapshot lists every adapter for the tracker, which reports the managed
// ones. Windows keeps no carrier-change counter: Changes stays 0.
func (w *linkWatcher) snapshot() ([]linktrack.Link, error) {
	as, err := adapters()
	if err != nil {
		return nil, err
	}
	ls := make([]linktrack.Link, 0, len(as))
	for _, a := range as {
		ls = append(ls, linktrack.Link{Index: int(a.Index), Name: a.Name, MAC: a.MAC, Up: a.Up, Managed: managed(a, w.names)})
	}
	return ls, nil
}
