package network

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prewarm/prewarm/linux/netmgr"
	"github.com/prewarm/prewarm/linux/nl"
)

// managerTimeout bounds how long one apply waits for a running manager to
// report an interface configured from the persisted file (NetworkManager
// deactivating a DHCP profile and activating the static one on a loaded
// machine takes seconds).
const managerTimeout = 90 * time.Second

// talksToManager reports whether the apply tells the running manager about
// the files it persisted: only on the live system itself (Root "/"); a
// scratch root's files are no running manager's business.
func (c *Configurator) talksToManager() bool {
	return c.o.Live && filepath.Clean(c.o.Root) == "/"
}

// applyManager makes the running manager (systemd-networkd or
// NetworkManager, whichever the files were written for) load the files
// persist wrote or removed and configure the interfaces from them, through
// its D-Bus API (linux/netmgr), waiting for each static interface until the
// manager reports it configured with the document's addresses. The
// manager's addresses are the document's, the ones applyLive set: the
// manager takes them over (networkd marks them static, NetworkManager
// configures the same ones), so the end state is the document's. With no
// bus or no such manager running it does nothing: the files take effect at
// the next boot, as before. A manager's refusal fails the interface, with
// the manager's error.
func (c *Configurator) applyManager(ctx context.Context, ws []*wanted, links map[string]nl.Link, files map[string]fileChange, skip map[string]bool, persisted []string) ([]string, error) {
	m := c.manager()
	if !c.talksToManager() || (m != Networkd && m != NetworkManager) {
		return nil, nil
	}
	type job struct {
		w     *wanted
		name  string
		file  string
		unset bool // the agent's file was removed: back to the root's configuration
	}
	var jobs []job
	for _, w := range ws {
		l, ok := links[w.mac]
		if !ok || skip[w.mac] {
			continue
		}
		id := strings.ReplaceAll(w.mac, ":", "")
		if w.cfg.DHCP4 {
			if slices.Contains(persisted, "remove "+networkdPath(id)) || slices.Contains(persisted, "remove "+keyfilePath(id)) {
				jobs = append(jobs, job{w: w, name: l.Name, unset: true})
			}
			continue
		}
		if f, ok := files[w.mac]; ok {
			jobs = append(jobs, job{w: w, name: l.Name, file: f.path})
		}
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, managerTimeout)
	defer cancel()
	dial := c.o.DialBus
	if dial == nil {
		dial = netmgr.Dial
	}
	bus, err := dial(ctx)
	if errors.Is(err, netmgr.ErrNoBus) {
		c.log.Info("no D-Bus system bus: the persisted network config takes effect at the next boot", "err", err)
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("apply the persisted network config: %w", err)
	}
	defer bus.Close()
	mname := netmgr.Networkd
	if m == NetworkManager {
		mname = netmgr.NetworkManager
	}
	if on, err := bus.Running(ctx, mname); err != nil {
		return nil, fmt.Errorf("apply the persisted network config: %w", err)
	} else if !on {
		c.log.Info("network manager not running: the persisted network config takes effect when it starts", "manager", mname)
		return nil, nil
	}
	var acts []string
	var errs []error
	reloaded := false
	for _, j := range jobs {
		start := time.Now()
		var err error
		changed := true
		switch {
		case j.unset && m == Networkd:
			err = bus.NetworkdReload(ctx, j.name)
		case j.unset && !reloaded:
			err, reloaded = bus.NMReload(ctx), true
		case j.unset:
		case m == Networkd:
			changed, err = bus.NetworkdApply(ctx, j.name, j.file, j.w.addrs, j.w.cfg.MTU)
		default:
			changed, err = bus.NMApply(ctx, j.name, j.file, j.w.addrs)
		}
		if err != nil {
			c.log.Error("network manager refused the persisted config", "manager", mname, "interface", j.name, "path", j.file, "err", err)
			errs = append(errs, fmt.Errorf("configure %s (%s) through %s: %w", j.name, j.w.mac, mname, err))
			continue
		}
		if !changed {
			continue
		}
		c.log.Info("network manager applied the persisted config", "manager", mname, "interface", j.name, "path", j.file, "ms", time.Since(start).Milliseconds())
		if j.unset {
			acts = append(acts, fmt.Sprintf("reload %s for %s", mname, j.name))
		} else {
			acts = append(acts, fmt.Sprintf("%s configured %s from %s", mname, j.name, j.file))
		}
	}
	return acts, errors.Join(errs...)
}
