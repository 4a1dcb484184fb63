package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// binder keeps one device-bound guest listener (ListenGuest with a device)
// for every host interface that is registered or named in
// Options.GuestInterfaces, on Options.GuestAddr. Hypervisors create a
// guest's tap device when it starts and remove it when it stops, so
// binding follows both the registry and the machine's links: a change of
// either kicks one reconcile, which binds wanted devices that exist,
// rebinds one whose device was re-created (a new ifindex), and closes
// listeners nobody wants or whose device is gone. Link changes come from
// a netlink subscription on Linux (linkwatch_linux.go); where that is not
// available the binder falls back to checking every few seconds.
type binder struct {
	s      *Server
	addr   string
	static []string

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
	hs    *http.Server
	ln    net.Listener
}

var errNoDevice = errors.New("no such network interface")

// binderPoll is the fallback period when link changes cannot be watched.
const binderPoll = 3 * time.Second

func startBinder(s *Server, addr string, static []string) *binder {
	b := &binder{
		s: s, addr: addr, static: static,
		kick:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		bound:  map[string]*boundIface{},
		failed: map[string]string{},
	}
	events, closeWatch, err := watchLinks()
	if err != nil {
		s.log.Warn("cannot watch network links; checking host interfaces every few seconds instead", "err", err, "period", binderPoll)
	}
	go b.loop(events, closeWatch)
	b.update()
	return b
}

// update asks for a reconcile (after a registry change or a link event).
func (b *binder) update() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *binder) stop() {
	close(b.quit)
	<-b.done
}

func (b *binder) loop(events <-chan struct{}, closeWatch func()) {
	defer close(b.done)
	var tick <-chan time.Time
	if events == nil {
		t := time.NewTicker(binderPoll)
		defer t.Stop()
		tick = t.C
	} else {
		defer closeWatch()
	}
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
				b.s.log.Warn("network link watch ended; checking host interfaces every few seconds instead")
			}
		case <-tick:
		}
		b.reconcile()
	}
}

// wanted is the set of devices to bind: the static ones and every
// registered hostInterface.
func (b *binder) wanted() map[string]bool {
	want := map[string]bool{}
	for _, d := range b.static {
		want[d] = true
	}
	b.s.mu.RLock()
	for d := range b.s.byIface {
		want[d] = true
	}
	b.s.mu.RUnlock()
	return want
}

func (b *binder) reconcile() {
	want := b.wanted()
	// One dump of the links per reconcile, not one per device.
	index := map[string]int{}
	ifis, err := net.Interfaces()
	if err != nil {
		b.s.log.Warn("list network interfaces", "err", err)
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
			b.s.log.Info("closing guest listener: host interface no longer registered", "hostInterface", dev)
		case !exists:
			b.s.log.Info("closing guest listener: host interface is gone", "hostInterface", dev)
		case idx != bi.index:
			b.s.log.Info("rebinding guest listener: host interface was re-created", "hostInterface", dev)
		default:
			continue
		}
		bi.hs.Close()
		delete(b.bound, dev)
	}
	devs := make([]string, 0, len(want))
	for d := range want {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, dev := range devs {
		if b.bound[dev] != nil {
			continue
		}
		idx, exists := index[dev]
		if !exists {
			b.note(dev, "host interface does not exist (yet); binding when it appears", errNoDevice)
			continue
		}
		ln, err := ListenGuest(context.Background(), b.addr, dev)
		if err != nil {
			b.note(dev, "cannot bind a guest listener to the host interface", err)
			continue
		}
		// The device may have been re-created between the lookup and the
		// bind; the next link event reconciles that.
		// A static device (--guest-interface) also serves address-only
		// guests behind it; one bound only because an instance registered
		// it serves that instance alone.
		byDeviceOnly := !slices.Contains(b.static, dev)
		hs := b.s.guestHTTPServer(dev, byDeviceOnly)
		b.bound[dev] = &boundIface{index: idx, hs: hs, ln: ln}
		delete(b.failed, dev)
		go func() {
			if err := b.s.serve(hs, b.s.limit(ln, dev, byDeviceOnly), "guest", dev); err != nil && !errors.Is(err, net.ErrClosed) {
				b.s.log.Debug("guest listener ended", "hostInterface", dev, "err", err)
			}
		}()
	}
	for dev := range b.failed {
		if !want[dev] {
			delete(b.failed, dev)
		}
	}
}

// note logs a binding problem once per device and error.
func (b *binder) note(dev, msg string, err error) {
	if b.failed[dev] == err.Error() {
		return
	}
	b.failed[dev] = err.Error()
	b.s.log.Warn(msg, "hostInterface", dev, "addr", b.addr, "err", err)
}
