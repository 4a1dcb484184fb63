package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	// (its source of link states), q (the events made and not yet taken
	// by the sender; it is pushed to under mu, with the tracker's update)
	// and inHand (events taken whose Handled the agent has not called).
	mu     sync.Mutex
	t      *tracker
	mon    osMon
	q      *linktrack.Queue
	inHand int
	// watch numbers the watches WatchLinks started (an event's Handled
	// counts only in its own watch's inHand); running says one is running.
	watch   uint64
	running bool
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
// initial state recorded before it returns. One watch runs at a time: a
// second call before the first one's ctx ended and its channel closed is
// refused (LinksBehind answers for the one running watch).
func (w *Watcher) WatchLinks(ctx context.Context) (<-chan agent.LinkEvent, error) {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return nil, errors.New("watch links: a watch is already running (one at a time)")
	}
	w.running = true
	w.mu.Unlock()
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
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
		return nil, fmt.Errorf("watch links: list links: %w", err)
	}
	t := newTracker(w.managed)
	t.seed(initial)
	q := linktrack.NewQueue()
	w.mu.Lock()
	w.t, w.mon, w.q, w.inHand = t, mon, q, 0
	w.watch++
	watch := w.watch
	w.mu.Unlock()

	out := make(chan agent.LinkEvent, 16)
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	go w.receive(ctx, mon, t, q, done)
	go func() {
		defer func() {
			w.mu.Lock()
			w.running = false
			w.mu.Unlock()
			close(out)
		}()
		for {
			select {
			case <-q.Notify:
			case <-done:
				return
			}
			// Taken and in hand under one lock: LinksBehind sees each
			// event queued or in hand until the agent calls Handled.
			w.mu.Lock()
			evs := q.Take()
			w.inHand += len(evs)
			w.mu.Unlock()
			for _, e := range evs {
				e.Handled = w.handledOnce(watch)
				select {
				case out <- e:
				case <-done:
					return
				}
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
		// Queued with the tracker's update, so LinksBehind never sees the
		// new state without the events it made.
		q.Push(evs...)
		w.mu.Unlock()
		for _, e := range evs {
			w.log.Info("link event", "kind", e.Kind.String(), "interface", e.Interface, "carrierChanges", e.CarrierChanges)
		}
	}
}

// LinksBehind implements agent.LinkSettler: it lists the links afresh (a
// netlink dump, or sysfs when polling), whose carrier and carrier-change
// counter the kernel updates at once, and reports true when a managed link
// has changed since the state the watcher last turned into events (the
// kernel sends link notices at most about once a second: the event is
// still to come), or when events are queued, or taken and not yet held
// by the agent (its call of the event's Handled). False before WatchLinks.
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
	undelivered := w.q.Len() + w.inHand
	behind := undelivered > 0
	debug := w.log.Enabled(ctx, slog.LevelDebug)
	var seen []string // what the kernel said, for the debug line
	for _, s := range cur {
		l := t.link(s)
		if !l.Managed {
			continue
		}
		behind = behind || t.t.Behind(l)
		if debug {
			seen = append(seen, fmt.Sprintf("%s:changes=%d:up=%t", l.Name, l.Changes, l.Up))
		}
	}
	w.mu.Unlock()
	// The evidence an outcome is reported on: a test (e2e TestVM) tells
	// a bounce the guest's kernel had not counted yet from one it had.
	if debug {
		w.log.Debug("links checked", "behind", behind, "undelivered", undelivered, "links", strings.Join(seen, ","))
	}
	return behind, nil
}

// handledOnce returns the Handled of one event taken from the queue of
// watch: its first call takes the event out of inHand, if that watch is
// still the Watcher's (a later watch starts its own count).
func (w *Watcher) handledOnce(watch uint64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			if w.watch == watch {
				w.inHand = max(0, w.inHand-1)
			}
			w.mu.Unlock()
		})
	}
}

var errClosed = errors.New("monitor closed")
