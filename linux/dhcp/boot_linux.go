package dhcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/prewarm/prewarm/linux/nl"
)

// AcquireAtStart gets the first leases when the built-in client is named
// (Options.Client "builtin"): then it is the only DHCP client of the
// managed interfaces, and nothing else brings them up with an address at
// boot. It brings each one up and runs a full DORA exchange (RenewDHCP),
// which also schedules the lease's renewals at T1. The interfaces are
// Options.Interfaces, or with none named every non-loopback interface
// backed by a device (a NIC, not a bridge, veth or tunnel the machine
// made). It blocks until every interface has its lease or failed, for at
// most wait in all (each attempt also bounded by Options.Timeout): the
// agent can reach its IMDS only once it has an address, but a NIC with no
// DHCP server must not hold the agent's start. An interface that failed,
// or was not tried within wait, is tried in the background with jittered
// exponential backoff (1 s doubling, capped at 1 min) until it has a
// lease, a carrier-back renewal got one first, or ctx ends. With any other
// client (or detection) it does nothing: the image's client owns the boot
// lease.
func (r *Renewer) AcquireAtStart(ctx context.Context, wait time.Duration) error {
	if r.o.Client != Builtin {
		return nil
	}
	ifaces := r.o.Interfaces
	if ifaces == nil {
		var err error
		if ifaces, err = deviceLinks(); err != nil {
			return fmt.Errorf("acquire DHCP leases at start: %w", err)
		}
	}
	first, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var errs []error
	for _, iface := range ifaces {
		t0 := time.Now()
		if _, err := r.RenewDHCP(first, iface); err != nil {
			errs = append(errs, err)
			r.log.Warn("no DHCP lease at start; retrying in the background", "interface", iface, "err", err)
			go r.retryAcquire(ctx, iface)
			continue
		}
		r.log.Info("DHCP lease acquired at start", "interface", iface, "ms", time.Since(t0).Milliseconds())
	}
	return errors.Join(errs...)
}

// retryAcquire retries a failed first lease of iface until one is held.
func (r *Renewer) retryAcquire(ctx context.Context, iface string) {
	backoff := time.Second
	for attempt := 2; ; attempt++ {
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if r.leased(iface) {
			return // a carrier-back renewal got it meanwhile
		}
		if _, err := r.RenewDHCP(ctx, iface); err == nil {
			r.log.Info("DHCP lease acquired at start", "interface", iface, "attempt", attempt)
			return
		} else if ctx.Err() != nil {
			return
		} else {
			r.log.Warn("no DHCP lease at start; retrying in the background", "interface", iface, "attempt", attempt, "err", err)
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// leased reports whether a built-in lease renewal is scheduled for iface
// (renewBuiltin schedules one with every lease it applies).
func (r *Renewer) leased(iface string) bool {
	r.timersMu.Lock()
	defer r.timersMu.Unlock()
	return r.timers[iface] != nil
}

// deviceLinks lists the non-loopback interfaces backed by a device
// (/sys/class/net/NAME/device).
func deviceLinks() ([]string, error) {
	links, err := nl.DumpLinks()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.Loopback {
			continue
		}
		if hasDevice(l.Name) {
			out = append(out, l.Name)
		}
	}
	return out, nil
}

// hasDevice reports whether the interface is backed by a device
// (/sys/class/net/NAME/device): a NIC, not a bridge, tunnel or veth.
func hasDevice(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name, "device"))
	return err == nil
}
