package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// adopt rebuilds the controller's state from libvirt and the IMDS: every
// domain with prewarm metadata is taken back in its state; a booting VM is
// watched again; a claim whose final document is out is rolled forward,
// one whose document is not is rolled back (the VM is destroyed and
// replaced); reservations, overlays and IMDS instances no domain owns are
// removed.
func (c *Controller) adopt(ctx context.Context) error {
	doms, err := c.hv.Domains(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	for _, n := range c.cfg.Networks {
		c.used[n.Name] = map[netip.Addr]string{}
	}
	c.mu.Unlock()
	owned := map[string]bool{}
	for _, d := range doms {
		owned[d.Name] = true
	}
	for _, n := range c.cfg.Networks {
		hosts, err := c.hv.DHCPHosts(ctx, n.Name)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if strings.HasPrefix(h.Name, "pw-") && !owned[h.Name] {
				c.log.Info("removing a reservation no domain owns", "instance", h.Name, "mac", h.MAC, "addr", h.IP)
				if err := c.hv.RemoveDHCPHost(ctx, n.Name, h.MAC); err != nil {
					return err
				}
				continue
			}
			if a, err := netip.ParseAddr(h.IP); err == nil {
				c.used[n.Name][a] = h.MAC
			}
		}
	}
	if vols, err := c.hv.Overlays(ctx, c.cfg.StoragePool); err != nil {
		return err
	} else {
		for _, vol := range vols {
			name := strings.TrimSuffix(vol, ".qcow2")
			if strings.HasPrefix(vol, "pw-") && name != vol && !owned[name] {
				c.log.Info("removing an overlay no domain owns", "path", vol)
				if err := c.hv.DeleteOverlay(ctx, c.cfg.StoragePool, vol); err != nil {
					return err
				}
			}
		}
	}
	if insts, err := c.imds.List(ctx); err != nil {
		return fmt.Errorf("list IMDS instances: %w", err)
	} else {
		for _, in := range insts {
			if _, ours := in.Labels[LabelPool]; ours && !owned[in.ID] {
				c.log.Info("removing an IMDS instance no domain owns", "instance", in.ID)
				if err := c.imds.Delete(ctx, in.ID); err != nil {
					return err
				}
			}
		}
	}
	for _, d := range doms {
		v := &vm{name: d.Name, meta: d.Meta}
		c.mu.Lock()
		c.vms[d.Name] = v
		// A claim's tenant address is its own even when its reservation
		// is missing (a claim cut short makes it beside its publish, and
		// a roll-forward makes it again): no new claim may take it.
		if a, err := netip.ParseAddr(d.Meta.TenantIP); err == nil && c.used[d.Meta.TenantNetwork] != nil {
			if _, taken := c.used[d.Meta.TenantNetwork][a]; !taken {
				c.used[d.Meta.TenantNetwork][a] = d.Meta.MAC
			}
		}
		c.mu.Unlock()
		m := d.Meta
		log := c.log.With("instance", d.Name, "flavor", m.Flavor, "poolState", m.State)
		if _, ok := c.cfg.Flavor(m.Flavor); !ok {
			log.Warn("adopted a VM of a flavor the config no longer has; it stays until released")
			continue
		}
		switch m.State {
		case virt.StateBooting, virt.StateWarm:
			if !d.Running {
				log.Warn("adopted VM is not running; replacing it")
				c.teardown(ctx, d.Name)
				continue
			}
			if m.State == virt.StateWarm {
				// A claim reads reports after this one only (not the
				// boot's DHCP renewal).
				if inst, err := c.imds.Instance(ctx, d.Name); err == nil && inst.LastStatus != nil {
					c.mu.Lock()
					v.lastSeq = inst.LastStatus.Seq
					c.mu.Unlock()
				}
			}
			if m.State == virt.StateBooting {
				start, err := time.Parse(status.TimeFormat, m.Created)
				if err != nil {
					start = c.now()
				}
				c.boots.force()
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					defer c.boots.release()
					c.watchBoot(ctx, d.Name, m.Flavor, start)
				}()
			}
			log.Info("adopted VM")
		case virt.StateClaiming:
			c.adoptClaim(ctx, d, log)
		case virt.StateClaimed:
			if m.PoolIP != "" && d.Running {
				// Claimed, but its pool address was not dropped yet.
				c.transit(m)
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					c.settle(ctx, d.Name, m, false)
				}()
			}
			log.Info("adopted VM")
		default:
			log.Info("adopted VM")
		}
	}
	return nil
}

// adoptClaim finishes or rolls back a claim a previous run left half-done.
func (c *Controller) adoptClaim(ctx context.Context, d virt.Domain, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	m := d.Meta
	inst, err := c.imds.Instance(ctx, d.Name)
	published := err == nil && inst.Generation > m.Generation
	if !d.Running || !published {
		log.Warn("rolling back a claim whose final document was never published", "claimId", m.ClaimID, "err", err)
		c.teardown(ctx, d.Name)
		return
	}
	log.Info("rolling forward a claim whose final document is out", "claimId", m.ClaimID, "generation", inst.Generation)
	c.resume(ctx, d.Name, m, inst.Generation)
}

// resume rolls a claim whose final document (generation gen) is out
// forward: the tenant reservation and the registration of both addresses
// made sure of (a claim makes them beside its publish, so a controller
// killed mid-claim may have published without them), the link bounced
// slowly (it may have been left down between re-map and bounce, or the
// guest may have missed the bounce), provisioned awaited, the claim
// completed. It registers the claim as in flight, so a retry of its id
// waits for it.
func (c *Controller) resume(ctx context.Context, name string, m virt.Meta, gen int64) *claimOp {
	p := &prepared{req: ClaimRequest{Flavor: m.Flavor, ClaimID: m.ClaimID}, hash: m.DocHash, network: m.TenantNetwork}
	op := &claimOp{hash: m.DocHash, done: make(chan struct{})}
	res := ClaimResult{ClaimID: m.ClaimID, VM: name, Flavor: m.Flavor, MAC: m.MAC, Network: m.TenantNetwork, IP: m.TenantIP,
		Generation: gen, Path: m.Path}
	c.mu.Lock()
	if cur := c.claims[m.ClaimID]; cur != nil {
		c.mu.Unlock()
		return cur
	}
	if v := c.vms[name]; v == nil || v.meta.State != virt.StateClaiming || v.meta.ClaimID != m.ClaimID {
		// Finished (or released) since the caller looked: nothing to
		// resume; a retry answers what there is.
		c.mu.Unlock()
		if v == nil {
			op.err = fmt.Errorf("claim %s: VM %s was released", m.ClaimID, name)
		} else if v.meta.State == virt.StateFailed {
			op.err = errf(http.StatusBadGateway, "claim %s failed on VM %s: %s (release it and claim with a new id)", m.ClaimID, name, v.err)
		} else {
			op.res = res
		}
		close(op.done)
		return op
	}
	c.claims[m.ClaimID] = op
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(op.done)
		octx, cancel := context.WithTimeout(ctx, c.cfg.ClaimTimeout.Duration+c.cfg.BootTimeout.Duration)
		defer cancel()
		start := c.now()
		op.res, op.err = c.resumeSteps(octx, p, res, m, start)
		c.mu.Lock()
		delete(c.claims, m.ClaimID)
		c.mu.Unlock()
	}()
	return op
}

func (c *Controller) resumeSteps(ctx context.Context, p *prepared, res ClaimResult, m virt.Meta, start time.Time) (ClaimResult, error) {
	name := res.VM
	if err := c.ensureTenant(ctx, name, m); err != nil {
		return c.claimStuck(p, res, start, name, "restore the tenant reservation and registration", err)
	}
	// Reports up to now belong to the run that was cut short (or to the
	// boot): they count for the outcome (the whole history is read again,
	// as an earlier attempt of this run may have read them), not as news
	// of this bounce. Unknown, every report counts as old: the slow bounce
	// stays armed.
	since := ^uint64(0)
	if inst, err := c.imds.Instance(ctx, name); err != nil {
		c.log.Warn("cannot read the status cursor; taking every report as older than the bounce", "instance", name, "err", err)
	} else if inst.LastStatus != nil {
		since = inst.LastStatus.Seq
	} else {
		since = 0
	}
	c.mu.Lock()
	if v := c.vms[name]; v != nil {
		v.lastSeq = 0
	}
	c.mu.Unlock()
	c.transit(m)
	nic := virt.NIC{MAC: m.MAC, Tap: m.Tap, Network: m.TenantNetwork}
	if err := c.hv.UpdateInterface(ctx, name, nic); err != nil {
		c.log.Warn("cannot take the link down to bounce it", "instance", name, "err", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(slowBounceGap):
	}
	nic.Up = true
	if err := c.hv.UpdateInterface(context.WithoutCancel(ctx), name, nic); err != nil {
		return c.claimStuck(p, res, start, name, "bounce the link", err)
	}
	return c.finish(ctx, p, res, start, since)
}

// ensureTenant makes sure a claim's tenant address is reserved for its MAC
// on the tenant network and registered with the IMDS beside its pool
// address (both idempotent).
func (c *Controller) ensureTenant(ctx context.Context, name string, m virt.Meta) error {
	want, err := netip.ParseAddr(m.TenantIP)
	if err != nil {
		return fmt.Errorf("the claim's tenant address %q: %w", m.TenantIP, err)
	}
	hosts, err := c.hv.DHCPHosts(ctx, m.TenantNetwork)
	if err != nil {
		return err
	}
	reserved := false
	for _, h := range hosts {
		if strings.EqualFold(h.MAC, m.MAC) {
			if h.IP != m.TenantIP {
				return fmt.Errorf("%s is reserved %s on %s, the claim says %s", m.MAC, h.IP, m.TenantNetwork, m.TenantIP)
			}
			reserved = true
		}
	}
	if reserved {
		c.mu.Lock()
		if c.used[m.TenantNetwork] != nil {
			c.used[m.TenantNetwork][want] = m.MAC
		}
		c.mu.Unlock()
	} else {
		if _, err := c.takeIP(ctx, m.TenantNetwork, m.MAC, want); err != nil {
			return err
		}
		c.log.Warn("the claim's tenant reservation is missing; making it", "instance", name, "mac", m.MAC, "addr", m.TenantIP)
		if err := c.hv.AddDHCPHost(ctx, m.TenantNetwork, m.MAC, m.TenantIP, name); err != nil {
			return err
		}
	}
	addrs := []string{m.TenantIP}
	if m.PoolIP != "" {
		addrs = []string{m.PoolIP, m.TenantIP}
	}
	if _, err := c.imds.Register(ctx, name, api.Registration{Addresses: addrs, Labels: map[string]string{LabelPool: m.Flavor}}); err != nil {
		return fmt.Errorf("register the tenant address: %w", err)
	}
	return nil
}
