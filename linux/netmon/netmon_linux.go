package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
)

// Options configure a Watcher.
type Options struct {
	// Interfaces restricts the managed interfaces by name (nil: every
	// non-loopback interface).
	Interfaces []string
	Logger     *slog.Logger
	// PollInterval is the period of the /sys/class/net fallback (default 1s).
	PollInterval time.Duration
	// SysClassNet is the directory polled in the fallback (default
	// /sys/class/net).
	SysClassNet string
	// ForcePoll skips netlink and polls at once (for tests).
	ForcePoll bool
}

// Watcher implements agent.LinkWatcher and agent.LinkSettler.
type Watcher struct {
	opts Options
	log  *slog.Logger
	// dial opens the netlink monitor; tests replace it.
	dial func() (osMon, error)

	// mu guards t (the tracker of the running watch, nil before it), mon
	// (its source of link states) and undelivered (events made but not
	// yet handed to the agent).
	mu          sync.Mutex
	t           *tracker
	mon         osMon
	undelivered int
}

var (
	_ agent.LinkWatcher = (*Watcher)(nil)
	_ agent.LinkSettler = (*Watcher)(nil)
)

// osMon is the OS side of the watcher: a source of link states.
type osMon interface {
	// Receive blocks for the next link states. full is true when the
	// states are a complete dump (after an overrun, or when polling).
	Receive() (states []linkState, full bool, err error)
	// Dump lists every link.
	Dump() ([]linkState, error)
	Close() error
}

// New returns a Watcher.
func New(o Options) *Watcher {
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.SysClassNet == "" {
		o.SysClassNet = "/sys/class/net"
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{opts: o, log: log.With("component", "netmon")}
	w.dial = func() (osMon, error) { return dialNetlink() }
	return w
}

func (w *Watcher) managed(s linkState) bool {
	if w.opts.Interfaces != nil {
		return slices.Contains(w.opts.Interfaces, s.Name)
	}
	return !s.Loopback
}

// WatchLinks implements agent.LinkWatcher. The subscription is open and the
// initial state recorded before it returns.
func (w *Watcher) WatchLinks(ctx context.Context) (<-chan agent.LinkEvent, error) {
	var mon osMon
	if !w.opts.ForcePoll {
		m, err := w.dial()
		if err != nil {
			w.log.Warn("netlink link notifications unavailable; polling instead", "path", w.opts.SysClassNet, "every", w.opts.PollInterval, "err", err)
		} else {
			mon = m
		}
	}
	if mon == nil {
		mon = newPollMon(ctx, w.opts.SysClassNet, w.opts.PollInterval)
	}
	initial, err := mon.Dump()
	if err != nil {
		mon.Close()
		return nil, fmt.Errorf("watch links: list links: %w", err)
	}
	t := newTracker(w.managed)
	t.seed(initial)
	w.mu.Lock()
	w.t, w.mon, w.undelivered = t, mon, 0
	w.mu.Unlock()

	out := make(chan agent.LinkEvent, 16)
	q := linktrack.NewQueue()
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	go w.receive(ctx, mon, t, q, done)
	go func() {
		defer close(out)
		for {
			select {
			case <-q.Notify:
			case <-done:
				return
			}
			for _, e := range q.Take() {
				select {
				case out <- e:
				case <-done:
					return
				}
				w.mu.Lock()
				w.undelivered = max(0, w.undelivered-1)
				w.mu.Unlock()
			}
		}
	}()
	return out, nil
}

// receive feeds the tracker until ctx ends. A failing netlink socket is
// replaced by polling, with a log line.
func (w *Watcher) receive(ctx context.Context, mon osMon, t *tracker, q *linktrack.Queue, done chan struct{}) {
	defer close(done)
	failures := 0
	for {
		states, full, err := mon.Receive()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			w.log.Warn("receive link notifications", "err", err)
			if failures >= 3 {
				mon.Close()
				w.log.Warn("netlink link notifications failing; polling instead", "path", w.opts.SysClassNet, "every", w.opts.PollInterval)
				mon = newPollMon(ctx, w.opts.SysClassNet, w.opts.PollInterval)
				w.mu.Lock()
				w.mon = mon
				w.mu.Unlock()
				go func(m osMon) { <-ctx.Done(); m.Close() }(mon)
				failures = 0
			}
			continue
		}
		failures = 0
		var evs []agent.LinkEvent
		w.mu.Lock()
		if full {
			evs = t.sync(states)
		} else {
			for _, s := range states {
				evs = append(evs, t.apply(s)...)
			}
		}
		// Counted before the tracker is seen updated, so LinksBehind never
		// sees the new state without the events it made.
		w.undelivered += len(evs)
		w.mu.Unlock()
		for _, e := range evs {
			w.log.Info("link event", "kind", e.Kind.String(), "interface", e.Interface, "carrierChanges", e.CarrierChanges)
		}
		q.Push(evs...)
	}
}

// LinksBehind implements agent.LinkSettler: it lists the links afresh (a
// netlink dump, or sysfs when polling), whose carrier and carrier-change
// counter the kernel updates at once, and reports true when a managed link
// has changed since the state the watcher last turned into events (the
// kernel sends link notices at most about once a second: the event is
// still to come), or when events are made but not yet handed to the
// agent. False before WatchLinks.
func (w *Watcher) LinksBehind(ctx context.Context) (bool, error) {
	w.mu.Lock()
	t, mon := w.t, w.mon
	w.mu.Unlock()
	if t == nil {
		return false, nil
	}
	cur, err := mon.Dump()
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.undelivered > 0 {
		return true, nil
	}
	for _, s := range cur {
		if t.t.Behind(t.link(s)) {
			return true, nil
		}
	}
	return false, nil
}

var errClosed = errors.New("monitor closed")
