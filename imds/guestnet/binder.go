package guestnet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"
)

// BinderOptions configure a Binder.
type BinderOptions struct {
	// Static are host devices to bind even before anything registers
	// them (serve --guest-interface).
	Static []string
	// Registered lists the host devices instances are registered with
	// now; the binder calls it at every reconcile. Nil: none.
	Registered func() []string
	// Serve (required) serves a new device-bound listener until the Closer
	// it returns is closed (an *http.Server). byDeviceOnly is true for a
	// device bound only because an instance registered it: its
	// connections belong to that instance alone, never to one matched by
	// source address; a Static device also serves address-only guests
	// behind it.
	Serve func(ln net.Listener, device string, byDeviceOnly bool) io.Closer
	// Logger receives the binder's logs; nil discards them.
	Logger *slog.Logger
}

// Binder keeps one device-bound guest listener for every host interface
// that is registered or static, on its Listener's address. Hypervisors
// create a guest's tap device when it starts and remove it when it stops,
// so binding follows both the registry and the machine's links: a change
// of either kicks one reconcile, which binds wanted devices that exist,
// rebinds one whose device was re-created (a new ifindex), and closes
// listeners nobody wants or whose device is gone. Link changes come from a
// netlink subscription on Linux (linkwatch_linux.go); where that is not
// available the binder falls back to checking every few seconds.
type Binder struct {
	o    BinderOptions
	addr string
	log  *slog.Logger

	kick chan struct{}
	quit chan struct{}
	done chan struct{}

	mu    sync.Mutex
	bound map[string]*boundIface // by device name; reconcile's own state
	// failed remembers the last error per device so it is logged once.
	failed map[string]string
}

type boundIface struct {
	index int
	srv   io.Closer
}

var errNoDevice = errors.New("no such network interface")

// startLinkWatch is watchLinks; tests count its calls.
var startLinkWatch = watchLinks

// binderPoll is the fallback period when link changes cannot be watched.
const binderPoll = 3 * time.Second

// StartBinder starts keeping device-bound listeners on l's address, all
// newer than l. Stop ends it; the listeners it opened stay with their
// Serve (close those with whatever serves them).
func (l *Listener) StartBinder(o BinderOptions) *Binder {
	if o.Serve == nil {
		panic("guestnet: StartBinder without BinderOptions.Serve")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Binder{
		o: o, addr: l.addr, log: log,
		kick:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		bound:  map[string]*boundIface{},
		failed: map[string]string{},
	}
	go b.loop()
	b.Update()
	return b
}

// Update asks for a reconcile (after a registry change).
func (b *Binder) Update() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Stop ends the binder and waits for its loop.
func (b *Binder) Stop() {
	close(b.quit)
	<-b.done
}

// Bound lists the devices that have a listener now, sorted.
func (b *Binder) Bound() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.bound))
}

// loop reconciles at every kick, link event or (without a link watch)
// tick. The links matter once a device is wanted: the link watch (a
// netlink socket and its reader) starts at the first reconcile that wants
// one, before that reconcile lists the links, so a device created
// meanwhile is seen by one or the other. A service whose instances
// register no host interface never opens it (issue 15: the idle
// server's goroutines and pages).
func (b *Binder) loop() {
	defer close(b.done)
	var (
		events   <-chan struct{}
		tick     <-chan time.Time
		watching bool
	)
	for {
		select {
		case <-b.quit:
			// Shutdown stops the listeners gracefully with the others.
			return
		case <-b.kick:
		case _, ok := <-events:
			if !ok {
				events = nil
				t := time.NewTicker(binderPoll)
				defer t.Stop()
				tick = t.C
				b.log.Warn("network link watch ended; checking host interfaces every few seconds instead")
			}
		case <-tick:
		}
		want := b.wanted()
		if !watching && len(want) > 0 {
			watching = true
			ev, closeWatch, err := startLinkWatch()
			if err != nil {
				b.log.Warn("cannot watch network links; checking host interfaces every few seconds instead", "err", err, "period", binderPoll)
				t := time.NewTicker(binderPoll)
				defer t.Stop()
				tick = t.C
			} else {
				events = ev
				defer closeWatch()
			}
		}
		b.reconcile(want)
	}
}

// wanted is the set of devices to bind: the static ones and every
// registered one.
func (b *Binder) wanted() map[string]bool {
	want := map[string]bool{}
	for _, d := range b.o.Static {
		want[d] = true
	}
	if b.o.Registered != nil {
		for _, d := range b.o.Registered() {
			want[d] = true
		}
	}
	return want
}

// reconcile binds the wanted devices and closes the listeners of the
// others (want: b.wanted()).
func (b *Binder) reconcile(want map[string]bool) {
	if len(want) == 0 && len(b.bound) == 0 { // bound and failed: reconcile's own
		// Nothing to bind or close: no dump of the links.
		clear(b.failed)
		return
	}
	// One dump of the links per reconcile, not one per device.
	index := map[string]int{}
	ifis, err := net.Interfaces()
	if err != nil {
		b.log.Warn("list network interfaces", "err", err)
		return
	}
	for _, ifi := range ifis {
		index[ifi.Name] = ifi.Index
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for dev, bi := range b.bound {
		idx, exists := index[dev]
		switch {
		case !want[dev]:
			b.log.Info("closing guest listener: host interface no longer registered", "hostInterface", dev)
		case !exists:
			b.log.Info("closing guest listener: host interface is gone", "hostInterface", dev)
		case idx != bi.index:
			b.log.Info("rebinding guest listener: host interface was re-created", "hostInterface", dev)
		default:
			continue
		}
		bi.srv.Close()
		delete(b.bound, dev)
	}
	for _, dev := range slices.Sorted(maps.Keys(want)) {
		if b.bound[dev] != nil {
			continue
		}
		idx, exists := index[dev]
		if !exists {
			b.note(dev, "host interface does not exist (yet); binding when it appears", errNoDevice)
			continue
		}
		ln, err := listen(context.Background(), b.addr, dev)
		if err != nil {
			b.note(dev, "cannot bind a guest listener to the host interface", err)
			continue
		}
		// The device may have been re-created between the lookup and the
		// bind; the next link event reconciles that.
		// A static device (--guest-interface) also serves address-only
		// guests behind it; one bound only because an instance registered
		// it serves that instance alone.
		byDeviceOnly := !slices.Contains(b.o.Static, dev)
		b.bound[dev] = &boundIface{index: idx, srv: b.o.Serve(ln, dev, byDeviceOnly)}
		delete(b.failed, dev)
	}
	for dev := range b.failed {
		if !want[dev] {
			delete(b.failed, dev)
		}
	}
}

// note logs a binding problem once per device and error.
func (b *Binder) note(dev, msg string, err error) {
	if b.failed[dev] == err.Error() {
		return
	}
	b.failed[dev] = err.Error()
	b.log.Warn(msg, "hostInterface", dev, "addr", b.addr, "err", err)
}
