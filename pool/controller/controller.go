// Package controller is prewarm-pool's state machine: it keeps each
// flavor's target of warm (partial-ready) VMs booted on libvirt, hands one
// to a claim (re-map to the tenant network, link bounce, final document,
// provisioned), falls back to a cold boot when none is warm, and adopts
// what exists after a restart. Its truth is libvirt (the domains'
// <metadata>, the networks' DHCP reservations, the overlay volumes) and the
// IMDS; it keeps no database of its own (docs/pool.md).
package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// Hypervisor is what the controller needs of libvirt (virt.Libvirt).
type Hypervisor interface {
	EnsureNetwork(ctx context.Context, n virt.NetworkSpec) error
	EnsureStoragePool(ctx context.Context, name, dir string) error
	DHCPHosts(ctx context.Context, network string) ([]virt.DHCPHost, error)
	// Leases returns the network's active DHCP leases, address -> MAC.
	Leases(ctx context.Context, network string) (map[netip.Addr]string, error)
	AddDHCPHost(ctx context.Context, network, mac, ip, name string) error
	RemoveDHCPHost(ctx context.Context, network, mac string) error
	CreateOverlay(ctx context.Context, pool, name, backing string) (string, error)
	DeleteOverlay(ctx context.Context, pool, name string) error
	Overlays(ctx context.Context, pool string) ([]string, error)
	DefineAndStart(ctx context.Context, domXML string) error
	Domains(ctx context.Context) ([]virt.Domain, error)
	SetMeta(ctx context.Context, name string, m virt.Meta) error
	UpdateInterface(ctx context.Context, name string, nic virt.NIC) error
	Destroy(ctx context.Context, name string) error
	Suspend(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
}

// IMDS is what the controller needs of the prewarm-imds admin API
// (*client.Client).
type IMDS interface {
	Register(ctx context.Context, id string, reg api.Registration) (api.Instance, error)
	PublishIfMatch(ctx context.Context, id string, doc []byte, ifMatch int64) (int64, error)
	Instance(ctx context.Context, id string) (api.Instance, error)
	List(ctx context.Context) ([]api.Instance, error)
	Delete(ctx context.Context, id string) error
	Status(ctx context.Context, id string, after uint64, wait bool, timeout time.Duration) (*api.StatusHistory, error)
}

// LabelPool is the IMDS label that marks the controller's instances (its
// value is the flavor).
const LabelPool = "prewarm-pool"

// Controller runs the pools of one host.
type Controller struct {
	cfg    *config.Config
	hv     Hypervisor
	imds   IMDS
	log    *slog.Logger
	now    func() time.Time
	m      *metrics
	routes Router

	boots *slots
	kick  chan struct{}

	mu     sync.Mutex
	vms    map[string]*vm
	used   map[string]map[netip.Addr]string // network -> address -> MAC
	next   map[string]netip.Addr            // network -> where allocIP's round-robin resumes
	leased map[string]map[netip.Addr]string // network -> dnsmasq's active leases (address -> MAC), as last read
	// claimsRunning counts warm claims in flight; paused are the booting
	// VMs suspended for them (pauseBootsDuringClaims).
	claimsRunning int
	paused        map[string]bool
	claims        map[string]*claimOp // in flight, by claim id
	stats         map[string]*flavorStats
	runCtx        context.Context
	wg            sync.WaitGroup
}

type vm struct {
	name string
	meta virt.Meta
	// lastSeq is the newest status report seq seen (the long-poll cursor).
	lastSeq uint64
	err     string
}

type flavorStats struct {
	failedBoots int
	lastBoot    time.Duration
	lastBootAt  time.Time
	backoff     time.Duration
	nextBoot    time.Time
}

type claimOp struct {
	hash string
	done chan struct{}
	res  ClaimResult
	err  error
}

// Options are New's optional parts.
type Options struct {
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Router carries transit routes (default: DefaultRouter()).
	Router Router
}

// New returns a controller; Run starts it.
func New(cfg *config.Config, hv Hypervisor, imds IMDS, o Options) *Controller {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Router == nil {
		o.Router = DefaultRouter()
	}
	c := &Controller{
		cfg: cfg, hv: hv, imds: imds, log: o.Logger, now: o.Now, routes: o.Router,
		boots:  newSlots(cfg.MaxBoots),
		kick:   make(chan struct{}, 1),
		vms:    map[string]*vm{},
		used:   map[string]map[netip.Addr]string{},
		claims: map[string]*claimOp{},
		stats:  map[string]*flavorStats{},
	}
	for _, f := range cfg.Flavors {
		c.stats[f.Name] = &flavorStats{}
	}
	c.m = newMetrics(c)
	return c
}

// Start ensures the networks and the storage pool, adopts the domains
// that exist, and starts the refill loop; it returns once the controller
// can take claims. The loop ends when ctx does; Wait waits for it and the
// operations it started.
func (c *Controller) Start(ctx context.Context) error {
	for _, n := range c.cfg.Networks {
		spec := virt.NetworkSpec{Name: n.Name, Bridge: n.Bridge, Prefix: n.Prefix()}
		if err := c.hv.EnsureNetwork(ctx, spec); err != nil {
			return err
		}
		setRPFilter(c.log, n.Bridge)
	}
	if err := c.hv.EnsureStoragePool(ctx, c.cfg.StoragePool, c.cfg.OverlayDir); err != nil {
		return err
	}
	c.mu.Lock()
	c.runCtx = ctx
	c.mu.Unlock()
	if err := c.adopt(ctx); err != nil {
		return err
	}
	c.wg.Add(1)
	go c.loop(ctx)
	return nil
}

// Wait waits for the loop and every operation to end after Start's
// context is done.
func (c *Controller) Wait() { c.wg.Wait() }

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// StopWatcher is a Hypervisor that reports domains that stop
// (virt.Libvirt.DomainStops: libvirt's lifecycle events).
type StopWatcher interface {
	DomainStops(ctx context.Context) (<-chan string, error)
}

// checkEvery is how often the loop looks for warm VMs whose domain died:
// the fallback for lifecycle events missed (or none: a hypervisor that
// is no StopWatcher, a dropped subscription until it is made again).
var checkEvery = 10 * time.Second

func (c *Controller) loop(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	stops := c.watchStops(ctx)
	c.refill(ctx)
	for {
		var wake <-chan time.Time
		if d := c.nextBackoff(); d > 0 {
			tm := time.NewTimer(d)
			wake = tm.C
			defer tm.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-wake:
		case <-t.C:
			if stops == nil {
				stops = c.watchStops(ctx)
			}
			c.checkDead(ctx)
		case name, ok := <-stops:
			if !ok {
				stops = nil
				if ctx.Err() == nil {
					c.log.Warn("libvirt lifecycle events ended; polling domains until subscribed again", "every", checkEvery)
				}
				continue
			}
			c.log.Debug("domain stopped", "instance", name)
			c.checkDead(ctx)
		}
		c.refill(ctx)
	}
}

// watchStops subscribes to domain stops, or returns nil (the poll alone).
func (c *Controller) watchStops(ctx context.Context) <-chan string {
	w, ok := c.hv.(StopWatcher)
	if !ok {
		return nil
	}
	ch, err := w.DomainStops(ctx)
	if err != nil {
		c.log.Warn("no libvirt lifecycle events; polling domains", "every", checkEvery, "err", err)
		return nil
	}
	return ch
}

// nextBackoff is how long until a flavor in backoff may boot again.
func (c *Controller) nextBackoff() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	now := c.now()
	for _, s := range c.stats {
		if w := s.nextBoot.Sub(now); w > 0 && (d == 0 || w < d) {
			d = w
		}
	}
	return d
}

// refill starts boots until every flavor has its target of warm and
// booting VMs; the boots wait for a slot (low priority).
func (c *Controller) refill(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	var start []string
	now := c.now()
	for _, f := range c.cfg.Flavors {
		s := c.stats[f.Name]
		if now.Before(s.nextBoot) {
			continue
		}
		n := 0
		for _, v := range c.vms {
			if v.meta.Flavor == f.Name && (v.meta.State == virt.StateBooting || v.meta.State == virt.StateWarm) {
				n++
			}
		}
		for ; n < f.Warm; n++ {
			name := newName(f.Name)
			c.vms[name] = &vm{name: name, meta: virt.Meta{Flavor: f.Name, State: virt.StateBooting, Path: "warm"}}
			start = append(start, name)
		}
	}
	c.mu.Unlock()
	for _, name := range start {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.bootWarm(ctx, name)
		}()
	}
}

// checkDead tears down warm or booting VMs whose domain is gone or not
// running (a crash, a poweroff from inside), so the refill replaces them.
func (c *Controller) checkDead(ctx context.Context) {
	doms, err := c.hv.Domains(ctx)
	if err != nil {
		c.log.Warn("cannot list domains", "err", err)
		return
	}
	running := map[string]bool{}
	for _, d := range doms {
		running[d.Name] = d.Running
	}
	c.mu.Lock()
	var dead []*vm
	for _, v := range c.vms {
		if v.meta.State == virt.StateWarm && !running[v.name] {
			dead = append(dead, v)
		}
	}
	c.mu.Unlock()
	for _, v := range dead {
		c.log.Warn("warm VM is not running; replacing it", "instance", v.name, "flavor", v.meta.Flavor)
		c.teardown(ctx, v.name)
		c.poke()
	}
}

func newName(flavor string) string {
	return "pw-" + flavor + "-" + randHex(3)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newMAC returns a random MAC in QEMU's 52:54:00 prefix.
func newMAC() string {
	b := make([]byte, 3)
	rand.Read(b)
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

func (c *Controller) stamp(t time.Time) string { return t.UTC().Format(status.TimeFormat) }

// readLeases refreshes what allocIP knows of the network's DHCP leases:
// dnsmasq keeps a released VM's lease (an hour) and will not give its
// address to another MAC meanwhile, so allocIP skips leased addresses. A
// failure to read them is logged and leaves the last view.
func (c *Controller) readLeases(ctx context.Context, network string) {
	l, err := c.hv.Leases(ctx, network)
	if err != nil {
		c.log.Warn("cannot read DHCP leases; an address a released VM still leases may be handed out", "err", err)
		return
	}
	c.mu.Lock()
	if c.leased == nil {
		c.leased = map[string]map[netip.Addr]string{}
	}
	c.leased[network] = l
	c.mu.Unlock()
}

// takeIP reads the network's DHCP leases afresh and then allocates an
// address for mac (allocIP): every allocation of a live VM goes through it.
func (c *Controller) takeIP(ctx context.Context, network, mac string, want netip.Addr) (netip.Addr, error) {
	c.readLeases(ctx, network)
	return c.allocIP(network, mac, want)
}

// allocIP takes the first free reserved-range address of network (or
// want, when set and free) for mac.
func (c *Controller) allocIP(network, mac string, want netip.Addr) (netip.Addr, error) {
	n, ok := c.cfg.Network(network)
	if !ok {
		return netip.Addr{}, fmt.Errorf("unknown network %q", network)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	used := c.used[network]
	if used == nil {
		used = map[netip.Addr]string{}
		c.used[network] = used
	}
	lo, hi := virt.ReservedRange(n.Prefix())
	if want.IsValid() {
		if want.Less(lo) || hi.Less(want) {
			return netip.Addr{}, fieldErr(http.StatusBadRequest, "invalid claim", api.FieldError{Path: "ip",
				Reason: fmt.Sprintf("must be in %s's reserved range %s-%s", network, lo, hi)})
		}
		if m, held := c.leased[network][want]; held && !strings.EqualFold(m, mac) {
			return netip.Addr{}, fieldErr(http.StatusConflict, "address in use", api.FieldError{Path: "ip",
				Reason: fmt.Sprintf("%s is still leased on %s to %s (a VM released before its lease ran out)", want, network, m)})
		}
		if m, taken := used[want]; taken && !strings.EqualFold(m, mac) {
			return netip.Addr{}, fieldErr(http.StatusConflict, "address in use", api.FieldError{Path: "ip",
				Reason: fmt.Sprintf("%s is reserved on %s for another VM", want, network)})
		}
		used[want] = mac
		return want, nil
	}
	// Round-robin from after the last address handed out: an address just
	// freed is not reused until the range wraps, because libvirt's dnsmasq
	// keeps the old MAC's lease (an hour) and will not give that address to
	// another MAC meanwhile (the new VM would get a dynamic address the IMDS
	// does not know, and never report).
	if c.next == nil {
		c.next = map[string]netip.Addr{}
	}
	start := c.next[network]
	if !start.IsValid() || start.Less(lo) || hi.Less(start) {
		start = lo
	}
	for a := start; ; {
		m, held := c.leased[network][a]
		if _, taken := used[a]; !taken && (!held || strings.EqualFold(m, mac)) {
			used[a] = mac
			c.next[network] = a.Next()
			return a, nil
		}
		if a = a.Next(); hi.Less(a) {
			a = lo
		}
		if a == start {
			break
		}
	}
	return netip.Addr{}, errf(http.StatusServiceUnavailable, "network %s has no free address in %s-%s", network, lo, hi)
}

func (c *Controller) freeIP(network, ip string) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	c.mu.Lock()
	delete(c.used[network], a)
	c.mu.Unlock()
}

func (c *Controller) setMeta(ctx context.Context, name string, m virt.Meta) error {
	if err := c.hv.SetMeta(ctx, name, m); err != nil {
		return err
	}
	c.mu.Lock()
	if v := c.vms[name]; v != nil {
		v.meta = m
	}
	c.mu.Unlock()
	return nil
}

func (c *Controller) getVM(name string) (*vm, virt.Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vms[name]
	if !ok {
		return nil, virt.Meta{}, false
	}
	return v, v.meta, true
}

func overlayName(vmName string) string { return vmName + ".qcow2" }

// domainSpec is the domain of a VM of flavor f with meta m on network.
func (c *Controller) domainSpec(name string, f *config.Flavor, disk string, m virt.Meta, network string, up bool) virt.DomainSpec {
	return virt.DomainSpec{
		Name: name, Type: c.cfg.DomainType, VCPUs: f.VCPUs, MemoryMiB: f.MemoryMiB, Machine: f.Machine,
		Kernel: f.Image.Kernel, Initrd: f.Image.Initrd, Cmdline: f.Image.Cmdline, Disk: disk,
		NIC:        virt.NIC{MAC: m.MAC, Tap: m.Tap, Network: network, Up: up},
		ConsoleLog: filepath.Join(c.cfg.ConsoleLogDir, name+".log"),
		Meta:       m,
	}
}

// bootWarm boots one pooled VM: pool address reserved, instance
// registered and placeholder published before the domain starts, then
// waits for partial-ready of that generation.
func (c *Controller) bootWarm(ctx context.Context, name string) {
	_, meta, ok := c.getVM(name)
	if !ok {
		return
	}
	f, _ := c.cfg.Flavor(meta.Flavor)
	if err := c.boots.acquire(ctx, false); err != nil {
		c.forget(name)
		return
	}
	defer c.boots.release()
	start := c.now()
	log := c.log.With("instance", name, "flavor", f.Name)
	fail := func(step string, err error) {
		c.bootFailed(ctx, name, f.Name, step, err)
	}
	meta.MAC = newMAC()
	meta.Tap = "pwt" + randHex(4)
	meta.PoolNetwork = f.PoolNetwork
	meta.Created = c.stamp(start)
	ip, err := c.takeIP(ctx, f.PoolNetwork, meta.MAC, netip.Addr{})
	if err != nil {
		fail("allocate address", err)
		return
	}
	meta.PoolIP = ip.String()
	c.mu.Lock()
	c.vms[name].meta = meta
	c.mu.Unlock()
	disk, err := c.hv.CreateOverlay(ctx, c.cfg.StoragePool, overlayName(name), f.Image.Disk)
	if err != nil {
		fail("create overlay", err)
		return
	}
	if err := c.hv.AddDHCPHost(ctx, f.PoolNetwork, meta.MAC, meta.PoolIP, name); err != nil {
		fail("reserve address", err)
		return
	}
	if _, err := c.imds.Register(ctx, name, api.Registration{Addresses: []string{meta.PoolIP}, Labels: map[string]string{LabelPool: f.Name}}); err != nil {
		fail("register with the IMDS", err)
		return
	}
	doc, err := config.PlaceholderDocument(f.Placeholder)
	if err != nil {
		fail("placeholder document", err)
		return
	}
	gen, err := c.imds.PublishIfMatch(ctx, name, doc, 0)
	if err != nil {
		fail("publish placeholder", err)
		return
	}
	meta.Generation = gen
	c.mu.Lock()
	c.vms[name].meta = meta
	c.mu.Unlock()
	x, err := virt.DomainXML(c.domainSpec(name, f, disk, meta, f.PoolNetwork, true))
	if err != nil {
		fail("domain XML", err)
		return
	}
	if err := c.hv.DefineAndStart(ctx, x); err != nil {
		fail("start domain", err)
		return
	}
	log.Info("booting warm VM", "mac", meta.MAC, "addr", meta.PoolIP, "hostInterface", meta.Tap, "generation", gen)
	c.watchBoot(ctx, name, f.Name, start)
}

// watchBoot waits for the VM's partial-ready (bounded by bootTimeout from
// start) and marks it warm; a failed report or the timeout replaces it.
func (c *Controller) watchBoot(ctx context.Context, name, flavor string, start time.Time) {
	wctx, cancel := context.WithDeadline(ctx, start.Add(c.cfg.BootTimeout.Duration))
	defer cancel()
	_, meta, _ := c.getVM(name)
	_, err := c.await(wctx, name, meta.Generation, status.StatePartialReady, nil)
	if err != nil {
		if _, _, ok := c.getVM(name); !ok {
			return // released while booting
		}
		if ctx.Err() != nil {
			return // shutting down: the next start adopts it
		}
		if wctx.Err() != nil {
			err = fmt.Errorf("no partial-ready within %s", c.cfg.BootTimeout.Duration)
		}
		c.bootFailed(ctx, name, flavor, "wait for partial-ready", err)
		return
	}
	_, meta, ok := c.getVM(name)
	if !ok || meta.State != virt.StateBooting {
		return
	}
	meta.State = virt.StateWarm
	if err := c.setMeta(ctx, name, meta); err != nil {
		c.bootFailed(ctx, name, flavor, "mark warm", err)
		return
	}
	took := c.now().Sub(start)
	c.mu.Lock()
	s := c.stats[flavor]
	s.lastBoot, s.lastBootAt, s.backoff = took, c.now(), 0
	c.mu.Unlock()
	c.m.boots.WithLabelValues(flavor, "ok").Inc()
	c.m.bootSeconds.WithLabelValues(flavor).Observe(took.Seconds())
	c.log.Info("VM warm", "instance", name, "flavor", flavor, "ms", took.Milliseconds())
	c.poke()
}

// bootFailed tears the VM down and backs the flavor's refill off
// (exponentially, capped), so a broken image does not spin.
func (c *Controller) bootFailed(ctx context.Context, name, flavor, step string, err error) {
	c.log.Error("boot failed; replacing the VM", "instance", name, "flavor", flavor, "phase", step, "err", err)
	c.m.boots.WithLabelValues(flavor, "failed").Inc()
	c.teardown(context.WithoutCancel(ctx), name)
	c.mu.Lock()
	s := c.stats[flavor]
	s.failedBoots++
	if s.backoff == 0 {
		s.backoff = time.Second
	} else if s.backoff < time.Minute {
		s.backoff *= 2
	}
	s.nextBoot = c.now().Add(s.backoff)
	c.mu.Unlock()
	c.poke()
}

func (c *Controller) forget(name string) {
	c.mu.Lock()
	delete(c.vms, name)
	c.mu.Unlock()
}

// teardown removes everything of a VM: the domain, its overlay, its
// address reservations and its IMDS instance. Each step is tried; failures
// are logged and returned joined.
func (c *Controller) teardown(ctx context.Context, name string) error {
	_, meta, _ := c.getVM(name)
	// Forget it first: its watchers stop, and the refill counts it gone.
	c.forget(name)
	var errs []error
	c.dropTransit(meta)
	if err := c.hv.Destroy(ctx, name); err != nil {
		errs = append(errs, err)
	}
	if err := c.hv.DeleteOverlay(ctx, c.cfg.StoragePool, overlayName(name)); err != nil {
		errs = append(errs, err)
	}
	for _, nw := range []struct{ net, ip string }{{meta.PoolNetwork, meta.PoolIP}, {meta.TenantNetwork, meta.TenantIP}} {
		if nw.net == "" || meta.MAC == "" {
			continue
		}
		if err := c.hv.RemoveDHCPHost(ctx, nw.net, meta.MAC); err != nil && !errors.Is(err, virt.ErrNotFound) {
			errs = append(errs, err)
		}
		c.freeIP(nw.net, nw.ip)
	}
	if err := c.imds.Delete(ctx, name); err != nil && client.StatusCode(err) != http.StatusNotFound {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		c.log.Error("teardown incomplete", "instance", name, "err", err)
	}
	return err
}

// statusPoll bounds one long-poll request; the wait as a whole is bounded
// by the caller's context.
const statusPoll = 25 * time.Second

// lastSeq is the newest report sequence number the controller has seen of
// VM name (0: none, or an unknown VM).
func (c *Controller) lastSeq(name string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.vms[name]; v != nil {
		return v.lastSeq
	}
	return 0
}

// await long-polls the instance's status until a report of generation gen
// in state want (returned), a failed report of gen (an error), or ctx
// ends. onReport sees every new report.
func (c *Controller) await(ctx context.Context, name string, gen int64, want string, onReport func(status.Report)) (status.Report, error) {
	v, _, ok := c.getVM(name)
	if !ok {
		return status.Report{}, fmt.Errorf("VM %s is gone", name)
	}
	c.mu.Lock()
	after := v.lastSeq
	c.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		h, err := c.imds.Status(ctx, name, after, true, statusPoll)
		if errors.Is(err, client.ErrNotModified) {
			continue
		}
		if _, _, ok := c.getVM(name); !ok {
			return status.Report{}, fmt.Errorf("VM %s was released", name)
		}
		if err != nil {
			if ctx.Err() != nil {
				return status.Report{}, ctx.Err()
			}
			if client.StatusCode(err) == http.StatusNotFound {
				return status.Report{}, fmt.Errorf("the IMDS no longer knows %s: %w", name, err)
			}
			c.log.Warn("status long-poll failed; retrying", "instance", name, "err", err, "retryIn", backoff)
			select {
			case <-ctx.Done():
				return status.Report{}, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, r := range h.Reports {
			if r.Seq > after {
				after = r.Seq
			}
			if onReport != nil {
				onReport(r)
			}
			if r.Generation != gen || r.Event != "" {
				continue
			}
			switch r.State {
			case want:
				c.mu.Lock()
				v.lastSeq = after
				c.mu.Unlock()
				return r, nil
			case status.StateFailed:
				c.mu.Lock()
				v.lastSeq = after
				c.mu.Unlock()
				return r, fmt.Errorf("agent failed to apply generation %d: %s", gen, r.Error)
			}
		}
		c.mu.Lock()
		v.lastSeq = after
		c.mu.Unlock()
	}
}

// Release destroys a VM (any state but one being claimed), removes its
// overlay, reservations and IMDS instance, and refills.
func (c *Controller) Release(ctx context.Context, name string) error {
	c.mu.Lock()
	v, ok := c.vms[name]
	if !ok {
		c.mu.Unlock()
		return fieldErr(http.StatusNotFound, "unknown VM", api.FieldError{Path: "vm", Reason: fmt.Sprintf("no VM %q in the pool", name)})
	}
	if v.meta.State == virt.StateClaiming {
		if op := c.claims[v.meta.ClaimID]; op != nil {
			c.mu.Unlock()
			return errf(http.StatusConflict, "VM %s is being claimed (claim %s); release it after the claim ends", name, v.meta.ClaimID)
		}
	}
	c.mu.Unlock()
	err := c.teardown(ctx, name)
	c.log.Info("VM released", "instance", name)
	c.poke()
	return err
}

// Status reports every flavor and VM.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st Status
	for _, f := range c.cfg.Flavors {
		fs := FlavorStatus{Name: f.Name, Target: f.Warm}
		s := c.stats[f.Name]
		fs.Failed = s.failedBoots
		fs.LastBootMS = s.lastBoot.Milliseconds()
		if !s.lastBootAt.IsZero() {
			fs.LastBootAt = c.stamp(s.lastBootAt)
		}
		for _, v := range c.vms {
			if v.meta.Flavor != f.Name {
				continue
			}
			switch v.meta.State {
			case virt.StateWarm:
				fs.Warm++
			case virt.StateBooting:
				fs.Booting++
			case virt.StateClaiming:
				fs.Claiming++
			case virt.StateClaimed:
				fs.Claimed++
			case virt.StateFailed:
				fs.Failed++
			}
		}
		st.Flavors = append(st.Flavors, fs)
	}
	for _, v := range c.vms {
		vs := VMStatus{Name: v.name, Flavor: v.meta.Flavor, State: v.meta.State, Path: v.meta.Path, MAC: v.meta.MAC,
			ClaimID: v.meta.ClaimID, Created: v.meta.Created, Failures: v.err}
		if v.meta.TenantNetwork != "" {
			vs.Network, vs.IP = v.meta.TenantNetwork, v.meta.TenantIP
		} else {
			vs.Network, vs.IP = v.meta.PoolNetwork, v.meta.PoolIP
		}
		st.VMs = append(st.VMs, vs)
	}
	sort.Slice(st.VMs, func(i, j int) bool { return st.VMs[i].Name < st.VMs[j].Name })
	return st
}

// transit routes the VM's pool address to its tenant bridge while the
// claim runs: the guest keeps its pool address until it renews DHCP, and
// with this route (and every bridge sharing one MAC, virt.BridgeMAC, so
// its cached gateway stays valid) its connections to the IMDS survive the
// re-map: the long-poll's answer and its reports arrive without waiting
// for the renewal. Best effort: without it the claim completes after the
// renewal.
func (c *Controller) transit(meta virt.Meta) {
	a, bridge, ok := c.transitRoute(meta)
	if !ok {
		return
	}
	if err := c.routes.AddHost(a, bridge); err != nil {
		c.log.Warn("no transit route; the claim waits for the guest's DHCP renewal", "mac", meta.MAC, "addr", meta.PoolIP, "err", err)
	}
}

// dropTransit removes the transit route, if any.
func (c *Controller) dropTransit(meta virt.Meta) {
	a, bridge, ok := c.transitRoute(meta)
	if !ok {
		return
	}
	if err := c.routes.DelHost(a, bridge); err != nil {
		c.log.Warn("cannot remove the transit route", "addr", meta.PoolIP, "err", err)
	}
}

// transitRoute is the VM's pool address and its tenant network's bridge;
// ok is false when either is unknown.
func (c *Controller) transitRoute(meta virt.Meta) (netip.Addr, string, bool) {
	a, err := netip.ParseAddr(meta.PoolIP)
	n, ok := c.cfg.Network(meta.TenantNetwork)
	if err != nil || !ok {
		return netip.Addr{}, "", false
	}
	return a, n.Bridge, true
}

// pauseBoots suspends the booting VMs while a warm claim runs (with
// pauseBootsDuringClaims): under TCG a boot takes a whole core, and the
// claimed VM's agent applies the document faster without it. The returned
// function resumes them once no claim runs any more.
func (c *Controller) pauseBoots(ctx context.Context) func() {
	if !c.cfg.PauseBootsDuringClaims {
		return func() {}
	}
	c.mu.Lock()
	c.claimsRunning++
	if c.paused == nil {
		c.paused = map[string]bool{}
	}
	var pause []string
	for _, v := range c.vms {
		if v.meta.State == virt.StateBooting && v.meta.Generation > 0 && !c.paused[v.name] {
			c.paused[v.name] = true
			pause = append(pause, v.name)
		}
	}
	c.mu.Unlock()
	if len(pause) > 0 {
		c.log.Info("pausing boots while a claim runs", "instances", pause)
	}
	for _, name := range pause {
		if err := c.hv.Suspend(ctx, name); err != nil {
			c.log.Warn("cannot pause a boot for a claim", "instance", name, "err", err)
			c.mu.Lock()
			delete(c.paused, name)
			c.mu.Unlock()
		}
	}
	return func() {
		c.mu.Lock()
		c.claimsRunning--
		var resume []string
		if c.claimsRunning == 0 {
			for name := range c.paused {
				resume = append(resume, name)
			}
			c.paused = map[string]bool{}
		}
		c.mu.Unlock()
		if len(resume) > 0 {
			c.log.Info("resuming paused boots", "instances", resume)
		}
		for _, name := range resume {
			if err := c.hv.Resume(context.WithoutCancel(ctx), name); err != nil {
				c.log.Warn("cannot resume a paused boot", "instance", name, "err", err)
			}
		}
	}
}
