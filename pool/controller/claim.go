package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// PrimaryMAC is the mac a claim document gives the VM's NIC, whose MAC the
// tenant cannot know before the claim; the controller substitutes it.
const PrimaryMAC = "primary"

var claimIDRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// prepared is a validated claim.
type prepared struct {
	req     ClaimRequest
	raw     []byte // the compact document as sent
	hash    string
	network string
	ip      netip.Addr
	timeout time.Duration
}

// prepare checks the request (flavor, network, claim id, address, the
// document by the contract's own rules) before anything is touched.
func (c *Controller) prepare(req ClaimRequest) (*prepared, error) {
	var fields []api.FieldError
	f, ok := c.cfg.Flavor(req.Flavor)
	if !ok {
		if req.Flavor == "" {
			fields = append(fields, api.FieldError{Path: "flavor", Reason: "required"})
		} else {
			return nil, fieldErr(http.StatusNotFound, "unknown flavor", api.FieldError{Path: "flavor", Reason: fmt.Sprintf("no flavor %q in the pool's config", req.Flavor)})
		}
	}
	p := &prepared{req: req}
	p.network = req.Network
	if p.network == "" && f != nil {
		p.network = f.TenantNetwork
	}
	if p.network == "" {
		fields = append(fields, api.FieldError{Path: "network", Reason: "required (the flavor has no tenantNetwork)"})
	} else if _, ok := c.cfg.Network(p.network); !ok {
		fields = append(fields, api.FieldError{Path: "network", Reason: fmt.Sprintf("no network %q in the pool's config", p.network)})
	} else {
		for _, fl := range c.cfg.Flavors {
			if fl.PoolNetwork == p.network {
				fields = append(fields, api.FieldError{Path: "network", Reason: fmt.Sprintf("%q is a pool network, not a tenant network", p.network)})
				break
			}
		}
	}
	if req.ClaimID != "" && !claimIDRule.MatchString(req.ClaimID) {
		fields = append(fields, api.FieldError{Path: "claimId", Reason: "must match " + claimIDRule.String()})
	}
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || !a.Is4() {
			fields = append(fields, api.FieldError{Path: "ip", Reason: "must be an IPv4 address"})
		} else if n, ok := c.cfg.Network(p.network); ok && !n.Prefix().Contains(a) {
			fields = append(fields, api.FieldError{Path: "ip", Reason: fmt.Sprintf("must be in %s (%s)", p.network, n.CIDR)})
		} else {
			p.ip = a
		}
	}
	if req.TimeoutMS < 0 {
		fields = append(fields, api.FieldError{Path: "timeoutMs", Reason: "must not be negative"})
	}
	// The client's timeout, by default claimTimeout, and at most a claim
	// plus a boot (a cold claim boots).
	p.timeout = c.cfg.ClaimTimeout.Duration
	if req.TimeoutMS > 0 {
		p.timeout = min(time.Duration(req.TimeoutMS)*time.Millisecond, c.cfg.ClaimTimeout.Duration+c.cfg.BootTimeout.Duration)
	}
	if len(bytes.TrimSpace(req.Document)) == 0 {
		fields = append(fields, api.FieldError{Path: "document", Reason: "required: the tenant's final config document"})
	} else {
		var b bytes.Buffer
		if err := json.Compact(&b, req.Document); err != nil {
			fields = append(fields, api.FieldError{Path: "document", Reason: "must be a JSON object"})
		} else {
			p.raw = b.Bytes()
			sum := sha256.Sum256(p.raw)
			p.hash = hex.EncodeToString(sum[:])
			doc, err := substituteMAC(p.raw, "52:54:00:00:00:00")
			if err == nil {
				err = validateFinal(doc)
			}
			var ve *config.ValidationError
			switch {
			case errors.As(err, &ve):
				for _, fe := range ve.Fields {
					fields = append(fields, api.FieldError{Path: "document." + fe.Path, Reason: fe.Reason})
				}
			case err != nil:
				fields = append(fields, api.FieldError{Path: "document", Reason: err.Error()})
			}
		}
	}
	if len(fields) > 0 {
		return nil, fieldErr(http.StatusBadRequest, "invalid claim", fields...)
	}
	return p, nil
}

// validateFinal checks a final document by the contract's rules (the
// IMDS's own), and that it is final.
func validateFinal(doc []byte) error {
	d, err := config.Decode(doc)
	if err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Partial {
		return &config.ValidationError{Fields: []config.FieldError{{Path: "partial", Reason: "must be absent or false: a claim publishes the final document"}}}
	}
	return nil
}

// replay awaits the claim in progress and returns its result marked
// replayed, or a 504 when ctx ends first ("claim <id> still in
// progress<where>").
func replay(ctx context.Context, op *claimOp, id, where string) (ClaimResult, error) {
	select {
	case <-op.done:
		r := op.res
		r.Replayed = true
		return r, op.err
	case <-ctx.Done():
		return ClaimResult{}, errf(http.StatusGatewayTimeout, "claim %s still in progress%s: %v", id, where, ctx.Err())
	}
}

// refusedDocument is the claim's 400 naming the document's fields when the
// IMDS refused a publish as invalid (its 400), nil for any other error.
func refusedDocument(err error) error {
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusBadRequest {
		return nil
	}
	fields := make([]api.FieldError, 0, len(ce.Body.Fields))
	for _, fe := range ce.Body.Fields {
		fields = append(fields, api.FieldError{Path: "document." + fe.Path, Reason: fe.Reason})
	}
	return fieldErr(http.StatusBadRequest, "invalid document (the IMDS refused it)", fields...)
}

// substituteMAC gives every network.interfaces[] entry whose mac is
// "primary" the VM's MAC.
func substituteMAC(doc []byte, mac string) ([]byte, error) {
	if !bytes.Contains(doc, []byte(`"`+PrimaryMAC+`"`)) {
		return doc, nil
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("must be a JSON object")
	}
	nw, _ := m["network"].(map[string]any)
	ifs, _ := nw["interfaces"].([]any)
	changed := false
	for _, e := range ifs {
		if in, ok := e.(map[string]any); ok && in["mac"] == PrimaryMAC {
			in["mac"] = mac
			changed = true
		}
	}
	if !changed {
		return doc, nil
	}
	return json.Marshal(m)
}

// Claim takes a warm VM of the flavor (or boots one cold), moves it to the
// tenant network, publishes the document and returns once the agent
// reports provisioned. A claim id already seen returns that claim's VM
// (awaiting it if it is still in flight), or an error if its document
// differs.
func (c *Controller) Claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	p, err := c.prepare(req)
	if err != nil {
		label := req.Flavor
		if _, ok := c.cfg.Flavor(label); !ok {
			label = "unknown" // no label values from unchecked input
		}
		c.m.claims.WithLabelValues(label, "", "invalid").Inc()
		return ClaimResult{}, err
	}
	if p.req.ClaimID == "" {
		p.req.ClaimID = "claim-" + randHex(8)
	}
	id := p.req.ClaimID
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	c.mu.Lock()
	if c.runCtx == nil {
		c.mu.Unlock()
		return ClaimResult{}, errf(http.StatusServiceUnavailable, "the controller is starting")
	}
	if op := c.claims[id]; op != nil {
		c.mu.Unlock()
		if op.hash != p.hash {
			return ClaimResult{}, conflict(id)
		}
		return replay(ctx, op, id, "")
	}
	for _, v := range c.vms {
		if v.meta.ClaimID != id {
			continue
		}
		m := v.meta
		c.mu.Unlock()
		if m.DocHash != p.hash {
			return ClaimResult{}, conflict(id)
		}
		name, verr := v.name, v.err
		switch m.State {
		case virt.StateFailed:
			return ClaimResult{}, errf(http.StatusBadGateway, "claim %s failed on VM %s: %s (release it and claim with a new id)", id, name, verr)
		case virt.StateClaiming:
			// A claim that timed out after its document went out: await it again.
			inst, err := c.imds.Instance(ctx, name)
			if err != nil {
				return ClaimResult{}, fmt.Errorf("claim %s on VM %s: read its generation: %w", id, name, err)
			}
			op := c.resume(c.runCtx, name, m, inst.Generation)
			return replay(ctx, op, id, " on VM "+name)
		}
		r := ClaimResult{ClaimID: id, VM: name, Flavor: m.Flavor, MAC: m.MAC, Network: m.TenantNetwork, IP: m.TenantIP,
			Path: m.Path, Replayed: true}
		if inst, err := c.imds.Instance(ctx, name); err == nil {
			r.Generation = inst.Generation
		}
		return r, nil
	}
	op := &claimOp{hash: p.hash, done: make(chan struct{})}
	c.claims[id] = op
	runCtx := c.runCtx
	c.mu.Unlock()

	// The claim's steps run on the controller's context, so a client that
	// goes away does not leave a half-done claim: it completes or rolls
	// back, and a retry with the same id picks it up.
	go func() {
		defer close(op.done)
		// The operation outlives a client's short timeout (bounded by the
		// server's own: a cold boot plus a claim), so a retry can await it.
		octx, ocancel := context.WithTimeout(context.WithoutCancel(runCtx), c.cfg.ClaimTimeout.Duration+c.cfg.BootTimeout.Duration)
		defer ocancel()
		op.res, op.err = c.claim(octx, p)
		c.mu.Lock()
		delete(c.claims, id)
		c.mu.Unlock()
	}()
	select {
	case <-op.done:
		return op.res, op.err
	case <-ctx.Done():
		return ClaimResult{}, errf(http.StatusGatewayTimeout, "claim %s did not finish within %s; it goes on: retry with the same claim id to await it", id, p.timeout)
	}
}

func conflict(id string) error {
	return fieldErr(http.StatusConflict, "claim id reused with another document",
		api.FieldError{Path: "claimId", Reason: fmt.Sprintf("%q was claimed with a different document", id)})
}

// pick marks the oldest warm VM of flavor as claimed by p (in memory; the
// caller writes the metadata) and returns it.
func (c *Controller) pick(p *prepared) (*vm, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var warm []*vm
	for _, v := range c.vms {
		if v.meta.Flavor == p.req.Flavor && v.meta.State == virt.StateWarm {
			warm = append(warm, v)
		}
	}
	if len(warm) == 0 {
		return nil, false
	}
	sort.Slice(warm, func(i, j int) bool { return warm[i].meta.Created < warm[j].meta.Created })
	v := warm[0]
	v.meta.State = virt.StateClaiming
	v.meta.ClaimID = p.req.ClaimID
	v.meta.DocHash = p.hash
	v.meta.TenantNetwork = p.network
	v.meta.ClaimStarted = c.stamp(c.now())
	return v, true
}

func (c *Controller) claim(ctx context.Context, p *prepared) (ClaimResult, error) {
	start := c.now()
	ms := func() int64 { return c.now().Sub(start).Milliseconds() }
	v, ok := c.pick(p)
	if !ok {
		r, err := c.claimCold(ctx, p, start)
		c.claimDone(p, r, err, start)
		return r, err
	}
	name := v.name
	c.mu.Lock()
	meta := v.meta
	c.mu.Unlock()
	defer c.pauseBoots(ctx)()
	log := c.log.With("instance", name, "flavor", meta.Flavor)
	res := ClaimResult{ClaimID: p.req.ClaimID, VM: name, Flavor: meta.Flavor, MAC: meta.MAC, Network: p.network, Path: "warm"}
	// Until the final document is published, any failure rolls back: the
	// VM is destroyed (it may have met the tenant network) and replaced.
	rollback := func(step string, err error) (ClaimResult, error) {
		log.Error("claim failed; rolling back", "phase", step, "err", err)
		c.teardown(context.WithoutCancel(ctx), name)
		c.poke()
		c.claimDone(p, res, err, start)
		if errors.Is(err, context.DeadlineExceeded) {
			return ClaimResult{}, errf(http.StatusGatewayTimeout, "claim %s: %s: %v (rolled back: the VM was destroyed and is replaced)", p.req.ClaimID, step, err)
		}
		return ClaimResult{}, fmt.Errorf("claim %s: %s: %w", p.req.ClaimID, step, err)
	}
	doc, err := substituteMAC(p.raw, meta.MAC)
	if err != nil {
		return rollback("document", err)
	}
	ip, err := c.takeIP(ctx, p.network, meta.MAC, p.ip)
	if err != nil {
		// Nothing was touched yet: the VM goes back to the pool.
		c.mu.Lock()
		v.meta.State, v.meta.ClaimID, v.meta.DocHash, v.meta.TenantNetwork, v.meta.ClaimStarted = virt.StateWarm, "", "", "", ""
		c.mu.Unlock()
		c.claimDone(p, res, err, start)
		return ClaimResult{}, err
	}
	meta.TenantIP = ip.String()
	res.IP = meta.TenantIP
	if err := c.setMeta(ctx, name, meta); err != nil {
		return rollback("record the claim", err)
	}
	res.Timings.PickedMS = ms()
	// The tenant reservation, the registration of both addresses (so the
	// guest is known whichever it calls from while it renews its lease),
	// the publish of the final document and the re-map (tenant network and
	// link down, one update) go at once: none needs another, and each is a
	// round trip that writes to disk (libvirt's network and domain XML, the
	// IMDS store), together most of the host's side of a claim when run one
	// after the other (reserved 0.3-3 s of a loaded machine's claim). All
	// are done before the link comes up below, and the guest can neither
	// ask DHCP on the tenant network nor call from its tenant address before
	// that. The agent's long-poll parked on the pool address may lose its
	// answer with the old bridge: it fetches the document again from its
	// tenant address after its DHCP renewal. Publishing first (so that
	// answer is delivered) was measured worse: the agent applies and
	// reports from its pool address while the NIC moves, its reports go
	// nowhere, and it renews only much later.
	type pubResult struct {
		gen int64
		err error
	}
	pub := make(chan pubResult, 1)
	go func() {
		gen, err := c.imds.PublishIfMatch(ctx, name, doc, meta.Generation)
		pub <- pubResult{gen, err}
	}()
	reserved := make(chan error, 2)
	go func() {
		if err := c.hv.AddDHCPHost(ctx, p.network, meta.MAC, meta.TenantIP, name); err != nil {
			reserved <- fmt.Errorf("reserve tenant address: %w", err)
			return
		}
		reserved <- nil
	}()
	go func() {
		if _, err := c.imds.Register(ctx, name, api.Registration{Addresses: []string{meta.PoolIP, meta.TenantIP}, Labels: map[string]string{LabelPool: meta.Flavor}}); err != nil {
			reserved <- fmt.Errorf("register tenant address: %w", err)
			return
		}
		reserved <- nil
	}()
	remapErr := c.hv.UpdateInterface(ctx, name, virt.NIC{MAC: meta.MAC, Tap: meta.Tap, Network: p.network, Up: false})
	if remapErr == nil {
		c.transit(meta)
	}
	res.Timings.RemappedMS = ms()
	reserveErr := errors.Join(<-reserved, <-reserved)
	res.Timings.ReservedMS = ms()
	pr := <-pub
	res.Timings.PublishedMS = ms()
	// A refused document is the caller's error and answered as such; any
	// other failure rolls back (the teardown takes whatever was published,
	// reserved or registered with the VM).
	if refused := refusedDocument(pr.err); refused != nil {
		rollback("publish", pr.err)
		return ClaimResult{}, refused
	}
	if reserveErr != nil {
		return rollback("reserve and register", reserveErr)
	}
	if pr.err != nil {
		return rollback("publish the final document", pr.err)
	}
	gen := pr.gen
	res.Generation = gen
	if remapErr != nil {
		// The document is out: go forward; the bounce below moves it too.
		log.Error("re-map failed; retrying with the link bounce", "err", remapErr)
	}
	if err := c.hv.UpdateInterface(ctx, name, virt.NIC{MAC: meta.MAC, Tap: meta.Tap, Network: p.network, Up: true}); err != nil {
		return c.claimStuck(p, res, start, name, "bounce the link", err)
	}
	res.Timings.BouncedMS = ms()
	log.Info("VM re-mapped", "mac", meta.MAC, "addr", meta.TenantIP, "generation", gen, "ms", res.Timings.BouncedMS)
	return c.finish(ctx, p, res, start, c.lastSeq(name))
}

// finish awaits provisioned for the claim's generation and completes the
// claim: state claimed, the IMDS knows only the tenant address, the pool
// reservation goes. Reports up to sequence number since came before this
// bounce (the boot's, or those of a claim cut short and resumed): they
// count for the outcome, and a DHCP renewal among them only if it was to
// the tenant address, never for the timings.
func (c *Controller) finish(ctx context.Context, p *prepared, res ClaimResult, start time.Time, since uint64) (ClaimResult, error) {
	ms := func() int64 { return c.now().Sub(start).Milliseconds() }
	name := res.VM
	heard := make(chan struct{})
	var once sync.Once
	wctx, stopWatch := context.WithCancel(ctx)
	if res.Path == "warm" {
		go c.rebounce(wctx, name, heard)
	}
	_, claimMeta, _ := c.getVM(name)
	renewedTo := false // the guest reported its tenant address
	r, err := c.await(ctx, name, res.Generation, status.StateProvisioned, func(r status.Report) {
		fresh := r.Seq > since
		renewal := r.Event == status.EventDHCPRenewed
		toTenant := renewal && hasAddr(r.Addresses, claimMeta.TenantIP)
		if renewal && fresh && res.Timings.RenewedMS == 0 {
			res.Timings.RenewedMS = ms()
		}
		if toTenant {
			renewedTo = true
		}
		// The guest got the document, or renewed since the bounce (or
		// before it, to its tenant address): no slow bounce is needed.
		if r.Generation == res.Generation || (renewal && fresh) || toTenant {
			once.Do(func() { close(heard) })
		}
	})
	stopWatch()
	if err != nil {
		return c.claimStuck(p, res, start, name, "await provisioned", err)
	}
	res.Timings.ProvisionedMS = ms()
	for _, s := range r.Steps {
		res.Timings.AppliedMS += s.MS
	}
	_, meta, ok := c.getVM(name)
	if !ok {
		return ClaimResult{}, fmt.Errorf("VM %s vanished during the claim", name)
	}
	meta.State = virt.StateClaimed
	if err := c.setMeta(ctx, name, meta); err != nil {
		return c.claimStuck(p, res, start, name, "record claimed", err)
	}
	if meta.PoolIP != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			// On the controller's context: a shutdown stops it, and the
			// next start settles the claim again (adopt).
			c.settle(c.runCtx, name, meta, renewedTo)
		}()
	}
	res.Timings.TotalMS = ms()
	c.log.Info("claim provisioned", "instance", name, "claimId", res.ClaimID, "claimPath", res.Path, "generation", res.Generation, "ms", res.Timings.TotalMS)
	c.claimDone(p, res, nil, start)
	c.poke()
	return res, nil
}

// hasAddr tells whether addrs (CIDR strings of a report) hold ip.
func hasAddr(addrs []string, ip string) bool {
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().String() == ip {
			return true
		}
	}
	return false
}

// settleWithin bounds how long a claimed VM keeps its pool address.
var settleWithin = 2 * time.Minute

// settle ends a claim's transition once the guest has its tenant address:
// until it reports a DHCP renewal to it (renewed: already seen) the pool
// address stays registered and routed, so the guest keeps reaching the
// IMDS, and a guest that missed the bounce is bounced slowly. Then, or
// after settleWithin, the IMDS knows only the tenant address, the transit
// route and the pool reservation go.
func (c *Controller) settle(ctx context.Context, name string, meta virt.Meta, renewed bool) {
	if !renewed {
		sctx, cancel := context.WithTimeout(ctx, settleWithin)
		heard := make(chan struct{})
		go c.rebounce(sctx, name, heard)
		_, err := c.await(sctx, name, -1, "", func(r status.Report) {
			if r.Event == status.EventDHCPRenewed && hasAddr(r.Addresses, meta.TenantIP) && !renewed {
				renewed = true
				close(heard)
				cancel()
			}
		})
		cancel()
		if !renewed {
			c.log.Warn("the guest did not report its tenant address; dropping its pool address anyway", "instance", name, "err", err)
		}
	}
	if _, _, ok := c.getVM(name); !ok {
		return // released meanwhile: teardown did it all
	}
	if _, err := c.imds.Register(ctx, name, api.Registration{Addresses: []string{meta.TenantIP}, Labels: map[string]string{LabelPool: meta.Flavor}}); err != nil {
		c.log.Warn("cannot drop the pool address from the IMDS registration", "instance", name, "err", err)
		return
	}
	c.dropTransit(meta)
	if err := c.hv.RemoveDHCPHost(ctx, meta.PoolNetwork, meta.MAC); err != nil {
		c.log.Warn("cannot drop the pool reservation", "instance", name, "err", err)
		return
	}
	c.freeIP(meta.PoolNetwork, meta.PoolIP)
	// The metadata no longer names a pool address: a restart has nothing
	// to settle.
	meta.PoolIP = ""
	c.mu.Lock()
	if v := c.vms[name]; v != nil {
		v.meta.PoolIP = ""
		meta = v.meta
	}
	c.mu.Unlock()
	if err := c.hv.SetMeta(ctx, name, meta); err != nil {
		c.log.Warn("cannot record the settled claim", "instance", name, "err", err)
	}
}

// Rebounce timing: how long the guest may stay silent after the bounce,
// and the gap of a slow bounce.
var (
	rebounceAfter = 6 * time.Second
	slowBounceGap = 1100 * time.Millisecond
	maxRebounces  = 3
)

// rebounce is the fallback for a guest that missed the bounce: a down/up
// a few milliseconds apart can reach the guest as one link message with
// the carrier up (HARNESS.md: QEMU set_link and the kernel's linkwatch),
// and an agent that misses it neither renews DHCP nor polls from its new
// address. Until the guest reports the claim's generation or a DHCP
// renewal since the bounce or to its tenant address (heard, see finish),
// every rebounceAfter the link goes down, and up again
// after slowBounceGap, which the guest's kernel always reports as two
// events. Bounded by maxRebounces; the normal path never waits on it.
func (c *Controller) rebounce(ctx context.Context, name string, heard <-chan struct{}) {
	_, meta, ok := c.getVM(name)
	if !ok {
		return
	}
	nic := virt.NIC{MAC: meta.MAC, Tap: meta.Tap, Network: meta.TenantNetwork}
	for i := 0; i < maxRebounces; i++ {
		select {
		case <-heard:
			return
		case <-ctx.Done():
			return
		case <-time.After(rebounceAfter):
		}
		c.log.Warn("the guest has not been heard from its tenant address since the bounce; bouncing its link slowly", "instance", name, "after", rebounceAfter)
		nic.Up = false
		if err := c.hv.UpdateInterface(ctx, name, nic); err != nil {
			c.log.Warn("slow bounce failed", "instance", name, "err", err)
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(slowBounceGap):
		}
		nic.Up = true
		if err := c.hv.UpdateInterface(context.WithoutCancel(ctx), name, nic); err != nil {
			c.log.Error("link left down after a slow bounce", "instance", name, "err", err)
		}
	}
}

// claimStuck answers a claim whose final document is out but that could
// not finish: the VM stays claiming (a restart or a retry with the same
// id rolls it forward); an agent failure marks it failed.
func (c *Controller) claimStuck(p *prepared, res ClaimResult, start time.Time, name, step string, err error) (ClaimResult, error) {
	c.log.Error("claim did not finish", "instance", name, "claimId", res.ClaimID, "phase", step, "err", err)
	c.mu.Lock()
	if v := c.vms[name]; v != nil {
		v.err = err.Error()
		if strings.HasPrefix(err.Error(), "agent failed") {
			v.meta.State = virt.StateFailed
		}
	}
	c.mu.Unlock()
	if _, meta, ok := c.getVM(name); ok && meta.State == virt.StateFailed {
		if merr := c.hv.SetMeta(context.Background(), name, meta); merr != nil {
			c.log.Warn("cannot record the failed claim", "instance", name, "err", merr)
		}
	}
	c.claimDone(p, res, err, start)
	code := http.StatusGatewayTimeout
	if !errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusBadGateway
	}
	return ClaimResult{}, errf(code, "claim %s on VM %s: %s: %v", res.ClaimID, name, step, err)
}

func (c *Controller) claimDone(p *prepared, res ClaimResult, err error, start time.Time) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	path := res.Path
	if path == "" {
		path = "warm"
	}
	c.m.claims.WithLabelValues(p.req.Flavor, path, result).Inc()
	if err == nil {
		c.m.claimSeconds.WithLabelValues(p.req.Flavor, path).Observe(c.now().Sub(start).Seconds())
	}
}

// claimCold boots a VM for the claim: straight onto the tenant network,
// the final document published before boot.
func (c *Controller) claimCold(ctx context.Context, p *prepared, start time.Time) (ClaimResult, error) {
	ms := func() int64 { return c.now().Sub(start).Milliseconds() }
	f, _ := c.cfg.Flavor(p.req.Flavor)
	name := newName(f.Name)
	meta := virt.Meta{Flavor: f.Name, State: virt.StateClaiming, Path: "cold", MAC: newMAC(), Tap: "pwt" + randHex(4),
		ClaimID: p.req.ClaimID, DocHash: p.hash, TenantNetwork: p.network, Created: c.stamp(start), ClaimStarted: c.stamp(start)}
	res := ClaimResult{ClaimID: p.req.ClaimID, VM: name, Flavor: f.Name, MAC: meta.MAC, Network: p.network, Path: "cold"}
	c.mu.Lock()
	c.vms[name] = &vm{name: name, meta: meta}
	c.mu.Unlock()
	log := c.log.With("instance", name, "flavor", f.Name)
	log.Info("no warm VM; booting one cold", "claimId", p.req.ClaimID)
	fail := func(step string, err error) (ClaimResult, error) {
		log.Error("cold claim failed; rolling back", "phase", step, "err", err)
		c.teardown(context.WithoutCancel(ctx), name)
		var e *Error
		if errors.As(err, &e) {
			return ClaimResult{}, err
		}
		return ClaimResult{}, fmt.Errorf("claim %s: %s: %w", p.req.ClaimID, step, err)
	}
	if err := c.boots.acquire(ctx, true); err != nil {
		return fail("wait for a boot slot", err)
	}
	defer c.boots.release()
	res.Timings.PickedMS = ms()
	doc, err := substituteMAC(p.raw, meta.MAC)
	if err != nil {
		return fail("document", err)
	}
	ip, err := c.takeIP(ctx, p.network, meta.MAC, p.ip)
	if err != nil {
		return fail("allocate address", err)
	}
	meta.TenantIP = ip.String()
	res.IP = meta.TenantIP
	c.mu.Lock()
	c.vms[name].meta = meta
	c.mu.Unlock()
	disk, err := c.hv.CreateOverlay(ctx, c.cfg.StoragePool, overlayName(name), f.Image.Disk)
	if err != nil {
		return fail("create overlay", err)
	}
	if err := c.hv.AddDHCPHost(ctx, p.network, meta.MAC, meta.TenantIP, name); err != nil {
		return fail("reserve tenant address", err)
	}
	if _, err := c.imds.Register(ctx, name, api.Registration{Addresses: []string{meta.TenantIP}, Labels: map[string]string{LabelPool: f.Name}}); err != nil {
		return fail("register with the IMDS", err)
	}
	gen, err := c.imds.PublishIfMatch(ctx, name, doc, 0)
	if err != nil {
		if refused := refusedDocument(err); refused != nil {
			return fail("publish", refused)
		}
		return fail("publish the final document", err)
	}
	res.Generation = gen
	res.Timings.PublishedMS = ms()
	x, err := virt.DomainXML(c.domainSpec(name, f, disk, meta, p.network, true))
	if err != nil {
		return fail("domain XML", err)
	}
	if err := c.hv.DefineAndStart(ctx, x); err != nil {
		return fail("start domain", err)
	}
	res.Timings.RemappedMS, res.Timings.BouncedMS = ms(), ms()
	log.Info("booting cold VM", "mac", meta.MAC, "addr", meta.TenantIP, "hostInterface", meta.Tap, "generation", gen)
	return c.finish(ctx, p, res, start, 0)
}
