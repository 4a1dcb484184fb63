package platform

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/windows/internal/plan"
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

	prev, err := w.snapshot()
	if err != nil {
		if h != 0 {
			windows.CancelMibChangeNotify2(h)
		}
		unregister()
		return nil, err
	}
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
			queue = coalesce(append(queue, plan.LinkEvents(prev, cur, time.Now())...))
			prev = cur
		}
	}()
	return out, nil
}

// coalesce bounds a slow reader's backlog: past 64 events it keeps only
// the last event of each interface.
func coalesce(q []agent.LinkEvent) []agent.LinkEvent {
	if len(q) <= 64 {
		return q
	}
	last := map[int]int{}
	for i, e := range q {
		last[e.Index] = i
	}
	var out []agent.LinkEvent
	for i, e := range q {
		if last[e.Index] == i {
			out = append(out, e)
		}
	}
	return out
}

func (w *linkWatcher) snapshot() (map[int]plan.Link, error) {
	as, err := adapters()
	if err != nil {
		return nil, err
	}
	m := map[int]plan.Link{}
	for _, a := range as {
		if managed(a, w.names) {
			m[int(a.Index)] = plan.Link{Index: int(a.Index), Name: a.Name, MAC: a.MAC, Up: a.Up}
		}
	}
	return m, nil
}
