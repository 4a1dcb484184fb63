package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Watcher implements agent.LinkWatcher.
type Watcher struct {
	opts Options
	log  *slog.Logger
	// dial opens the netlink monitor; tests replace it.
	dial func() (osMon, error)
}

var _ agent.LinkWatcher = (*Watcher)(nil)

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
				go func(m osMon) { <-ctx.Done(); m.Close() }(mon)
				failures = 0
			}
			continue
		}
		failures = 0
		var evs []agent.LinkEvent
		if full {
			evs = t.sync(states)
		} else {
			for _, s := range states {
				evs = append(evs, t.apply(s)...)
			}
		}
		for _, e := range evs {
			w.log.Info("link event", "kind", e.Kind.String(), "interface", e.Interface, "carrierChanges", e.CarrierChanges)
		}
		q.Push(evs...)
	}
}

var errClosed = errors.New("monitor closed")
