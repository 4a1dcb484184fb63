package platform

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

type linkWatcher struct {
	names   []string
	poll    time.Duration
	bounces *plan.Bounces // marked for each carrier event, for the DHCP renewal
	// restore applies the recorded static network again (the network
	// configurator's Restore): when the watch starts, which is when the
	// agent starts, and when a managed NIC appears. Nil: never.
	restore func(context.Context) error
	log     *slog.Logger
}

// Change notifications arrive on a thread of iphlpapi's through one
// callback (Windows callbacks are a limited resource, so there is exactly
// one); it records the interface's connected state in flaps and wakes
// every open watcher, and each re-reads the adapters.
var (
	watchersMu sync.Mutex
	watchers   = map[chan struct{}]bool{}

	// flaps counts each interface's connected-state changes as the
	// notifications see them: the carrier-change counter Windows does not
	// keep, so a flap shorter than the gap between two reads of the
	// adapters is still an event (snapshot puts it in Link.Changes).
	flaps plan.FlapCounter

	interfaceChangeCallback = sync.OnceValue(func() uintptr {
		return windows.NewCallback(func(_ uintptr, row *windows.MibIpInterfaceRow, kind uint32) uintptr {
			observeInterface(row, kind)
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
	kick := w.restorer(ctx)
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
			evs := t.Sync(cur)
			w.markBounces(evs)
			for _, e := range evs {
				if e.Kind == agent.LinkAdded {
					kick()
				}
			}
			queue = linktrack.Bound(append(queue, evs...))
		}
	}()
	return out, nil
}

// observeInterface records the connected state of the interface a change
// notification is about. The notification's row is incomplete (the
// documentation: only enough to call GetIpInterfaceEntry), so the state is
// read afresh, at once, on the notifying thread: the closest to the change
// the platform can see. A deleted interface is forgotten.
func observeInterface(row *windows.MibIpInterfaceRow, kind uint32) {
	if row == nil {
		return
	}
	if kind == windows.MibDeleteInstance {
		flaps.Forget(row.InterfaceIndex, row.Family)
		return
	}
	var cur windows.MibIpInterfaceRow
	winapi.InitializeIpInterfaceEntry(&cur)
	cur.Family, cur.InterfaceLuid = row.Family, row.InterfaceLuid
	if windows.GetIpInterfaceEntry(&cur) != nil {
		return // gone meanwhile: its delete notification follows
	}
	flaps.Observe(cur.InterfaceIndex, cur.Family, cur.Connected != 0)
}

// snapshot lists every adapter for the tracker, which reports the managed
// ones. Changes is the count of connected-state changes the notifications
// saw (flaps), Windows' stand-in for Linux's carrier-change counter.
func (w *linkWatcher) snapshot() ([]linktrack.Link, error) {
	as, err := adapters()
	if err != nil {
		return nil, err
	}
	ls := make([]linktrack.Link, 0, len(as))
	for _, a := range as {
		ls = append(ls, linktrack.Link{Index: int(a.Index), Name: a.Name, MAC: a.MAC, Up: a.Up, Changes: flaps.Changes(a.Index), Managed: managed(a, w.names)})
	}
	return ls, nil
}

// markBounces records each carrier event's interface as bounced before the
// agent hears of it, so the renewal the event starts releases first.
func (w *linkWatcher) markBounces(evs []agent.LinkEvent) {
	if w.bounces == nil {
		return
	}
	for _, e := range evs {
		if e.Kind == agent.CarrierLost || e.Kind == agent.CarrierBack {
			w.bounces.Mark(uint32(e.Index), e.Time)
		}
	}
}

// restorer starts the goroutine that runs w.restore, once now and again
// each time the returned function is called (calls while one runs fold
// into one more run), until ctx ends. The static addresses and routes of
// the active store are gone after a restart and after a NIC is reset (it
// comes back as a new interface): both are when they are restored.
func (w *linkWatcher) restorer(ctx context.Context) (kick func()) {
	if w.restore == nil {
		return func() {}
	}
	ch := make(chan struct{}, 1)
	kick = func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			if err := w.restore(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("restore the static network", "err", err)
			}
		}
	}()
	kick()
	return kick
}
