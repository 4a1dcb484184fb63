package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
)

func testConfig(t *testing.T, warm int) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"disk.qcow2", "vmlinuz"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	y := `
overlayDir: ` + dir + `/overlays
consoleLogDir: ` + dir + `/console
maxBoots: 2
bootTimeout: 20s
claimTimeout: 20s
networks:
  - {name: pool, bridge: pwpool0, cidr: 10.254.0.0/24}
  - {name: tenant-a, bridge: pwta0, cidr: 10.10.1.0/24}
  - {name: tenant-b, bridge: pwtb0, cidr: 10.10.2.0/24}
flavors:
  - name: small
    vcpus: 1
    memoryMiB: 256
    poolNetwork: pool
    tenantNetwork: tenant-a
    warm: ` + itoa(warm) + `
    image: {disk: ` + dir + `/disk.qcow2, kernel: ` + dir + `/vmlinuz}
`
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+n))) }

type harness struct {
	t   *testing.T
	c   *Controller
	hv  *fakeHV
	srv interface {
		Instance(string) (api.Instance, bool)
	}
	cancel context.CancelFunc
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func start(t *testing.T, cfg *config.Config, prepare func(*fakeHV)) *harness {
	t.Helper()
	srv, imds := startIMDS(t)
	hv := newFakeHV(t, srv)
	if prepare != nil {
		prepare(hv)
	}
	c := New(cfg, hv, imds, Options{Logger: testLogger(t), Router: hv})
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		c.Wait()
	})
	return &harness{t: t, c: c, hv: hv, srv: srv, cancel: cancel}
}

// waitFor polls cond (bounded) until it holds.
func (h *harness) waitFor(what string, cond func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := h.c.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func warm(n int) func(Status) bool {
	return func(st Status) bool { return st.Flavors[0].Warm == n && st.Flavors[0].Booting == 0 }
}

const tenantDoc = `{"hostname": "web-01", "timezone": "UTC", "users": [{"name": "alice", "sudo": "nopasswd"}]}`

func TestRefillClaimAndRefill(t *testing.T) {
	h := start(t, testConfig(t, 2), nil)
	h.waitFor("2 warm VMs", warm(2))

	res, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", ClaimID: "c-1", Document: json.RawMessage(tenantDoc)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != "warm" || res.Network != "tenant-a" || !strings.HasPrefix(res.IP, "10.10.1.") || res.Generation != 2 || res.ClaimID != "c-1" {
		t.Errorf("claim result = %+v", res)
	}
	tm := res.Timings
	if !(tm.PickedMS <= tm.RemappedMS && tm.RemappedMS <= tm.BouncedMS && tm.BouncedMS <= tm.ProvisionedMS && tm.ProvisionedMS <= tm.TotalMS) {
		t.Errorf("timings out of order: %+v", tm)
	}
	if tm.AppliedMS != 12 {
		t.Errorf("applied = %d ms, want the agent's steps' 12 ms", tm.AppliedMS)
	}
	meta, nic, ok := h.hv.domain(res.VM)
	if !ok || meta.State != virt.StateClaimed || meta.ClaimID != "c-1" || meta.TenantIP != res.IP {
		t.Errorf("domain metadata = %+v", meta)
	}
	if nic.Network != "tenant-a" || !nic.Up {
		t.Errorf("NIC = %+v, want up on tenant-a", nic)
	}
	// The re-map (link down on the tenant network) came before the bounce.
	var ups []string
	for _, c := range h.hv.calls {
		if strings.HasPrefix(c, "update-interface "+res.VM) {
			ups = append(ups, c)
		}
	}
	if want := []string{"update-interface " + res.VM + " tenant-a up=false", "update-interface " + res.VM + " tenant-a up=true"}; !slices.Equal(ups, want) {
		t.Errorf("interface updates = %q, want %q", ups, want)
	}
	// Once the guest reports its tenant address, the IMDS knows it by
	// that alone, and the pool reservation and transit route are gone.
	h.waitFor("the claim to settle", func(Status) bool {
		return slices.Equal(registration(t, h.hv.imds, res.VM), []string{res.IP}) && h.hv.ipOf("pool", res.MAC) == ""
	})
	h.hv.mu.Lock()
	routed := len(h.hv.routes)
	var routeCalls []string
	for _, c := range h.hv.calls {
		if strings.HasPrefix(c, "route ") {
			routeCalls = append(routeCalls, c)
		}
	}
	h.hv.mu.Unlock()
	if routed != 0 || len(routeCalls) != 2 || !strings.HasPrefix(routeCalls[0], "route add 10.254.0.") || !strings.HasSuffix(routeCalls[0], " dev pwta0") ||
		!strings.HasPrefix(routeCalls[1], "route del ") {
		t.Errorf("transit route calls %q (left: %d), want one added to pwta0 and removed", routeCalls, routed)
	}
	if ip := h.hv.ipOf("tenant-a", res.MAC); ip != res.IP {
		t.Errorf("tenant reservation = %q, want %s", ip, res.IP)
	}
	st := h.waitFor("the refill back to 2 warm", warm(2))
	if st.Flavors[0].Claimed != 1 {
		t.Errorf("claimed = %d, want 1", st.Flavors[0].Claimed)
	}
}

func TestClaimIdempotentByID(t *testing.T) {
	h := start(t, testConfig(t, 1), nil)
	h.waitFor("1 warm VM", warm(1))
	req := ClaimRequest{Flavor: "small", ClaimID: "same", Document: json.RawMessage(tenantDoc)}
	first, err := h.c.Claim(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The same document, spaced differently, is the same claim.
	req.Document = json.RawMessage(strings.ReplaceAll(tenantDoc, ": ", ":"))
	again, err := h.c.Claim(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.VM != first.VM || !again.Replayed || again.Generation != first.Generation {
		t.Errorf("retry = %+v, want VM %s replayed", again, first.VM)
	}
	req.Document = json.RawMessage(`{"hostname": "other"}`)
	_, err = h.c.Claim(context.Background(), req)
	var e *Error
	if !errors.As(err, &e) || e.Code != http.StatusConflict || len(e.Body.Fields) != 1 || e.Body.Fields[0].Path != "claimId" {
		t.Fatalf("same id, other document: err = %v, want 409 naming claimId", err)
	}
	if n := h.c.Status().Flavors[0].Claimed; n != 1 {
		t.Errorf("claimed = %d, want 1 (never two VMs for one claim)", n)
	}
}

func TestColdClaimPublishesBeforeBoot(t *testing.T) {
	h := start(t, testConfig(t, 0), nil)
	res, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", Network: "tenant-b", IP: "10.10.2.9",
		Document: json.RawMessage(`{"hostname": "cold-01", "network": {"interfaces": [{"mac": "primary", "dhcp4": false, "addresses": ["10.10.2.9/24", "192.0.2.10/24"]}]}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != "cold" || res.IP != "10.10.2.9" || res.Network != "tenant-b" || res.Generation != 1 {
		t.Errorf("cold claim = %+v", res)
	}
	if g := h.hv.genAtDefine[res.VM]; g != 1 {
		t.Errorf("generation published when the domain was defined = %d, want 1 (final document before boot)", g)
	}
	doc, err := h.hv.imds.Config(res.VM)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(doc.Network.Interfaces[0].MAC); got != res.MAC {
		t.Errorf(`"primary" became %q, want the VM's MAC %s`, got, res.MAC)
	}
}

func TestClaimBadInputLeavesNothing(t *testing.T) {
	h := start(t, testConfig(t, 1), nil)
	h.waitFor("1 warm VM", warm(1))
	before := h.c.Status()
	for _, tc := range []struct {
		name  string
		req   ClaimRequest
		code  int
		paths []string
	}{
		{"unknown flavor", ClaimRequest{Flavor: "huge", Document: json.RawMessage(tenantDoc)}, 404, []string{"flavor"}},
		{"invalid document", ClaimRequest{Flavor: "small", Document: json.RawMessage(`{"hostname": "-bad-", "users": [{"name": "root"}], "colour": 1}`)}, 400,
			[]string{"document.colour", "document.hostname", "document.users[0].name"}},
		{"partial document", ClaimRequest{Flavor: "small", Document: json.RawMessage(`{"partial": true}`)}, 400, []string{"document.partial"}},
		{"pool network", ClaimRequest{Flavor: "small", Network: "pool", Document: json.RawMessage(tenantDoc)}, 400, []string{"network"}},
		{"address outside", ClaimRequest{Flavor: "small", IP: "10.99.0.1", Document: json.RawMessage(tenantDoc)}, 400, []string{"ip"}},
		{"bad claim id", ClaimRequest{Flavor: "small", ClaimID: "../x", Document: json.RawMessage(tenantDoc)}, 400, []string{"claimId"}},
		{"no document", ClaimRequest{Flavor: "small"}, 400, []string{"document"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.c.Claim(context.Background(), tc.req)
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("err = %v, want %d", err, tc.code)
			}
			var paths []string
			for _, f := range e.Body.Fields {
				paths = append(paths, f.Path)
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("fields = %q, want %q", paths, tc.paths)
			}
		})
	}
	after := h.c.Status()
	if after.Flavors[0].Warm != before.Flavors[0].Warm || after.Flavors[0].Claimed != 0 || after.Flavors[0].Claiming != 0 {
		t.Errorf("bad claims changed the pool: before %+v after %+v", before.Flavors[0], after.Flavors[0])
	}
}

func TestAgentFailureMarksVMFailed(t *testing.T) {
	h := start(t, testConfig(t, 1), nil)
	h.waitFor("1 warm VM", warm(1))
	_, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", ClaimID: "f", Document: json.RawMessage(`{"hostname": "fail-me"}`)})
	if err == nil || !strings.Contains(err.Error(), "hostname: refused") {
		t.Fatalf("err = %v, want the agent's error", err)
	}
	st := h.c.Status()
	var failed []VMStatus
	for _, v := range st.VMs {
		if v.State == virt.StateFailed {
			failed = append(failed, v)
		}
	}
	if len(failed) != 1 || failed[0].ClaimID != "f" {
		t.Fatalf("failed VMs = %+v", failed)
	}
	if err := h.c.Release(context.Background(), failed[0].Name); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := h.hv.domain(failed[0].Name); ok {
		t.Error("released domain still defined")
	}
	h.hv.mu.Lock()
	left := h.hv.overlays[failed[0].Name+".qcow2"]
	h.hv.mu.Unlock()
	if left {
		t.Error("released VM's overlay left behind")
	}
	if _, ok := h.hv.imds.Instance(failed[0].Name); ok {
		t.Error("released VM still registered with the IMDS")
	}
}

func TestBootThatNeverReportsIsReplaced(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.BootTimeout.Duration = time.Second
	h := start(t, cfg, func(hv *fakeHV) { hv.silent = true })
	st := h.waitFor("a failed boot", func(st Status) bool { return st.Flavors[0].Failed >= 1 })
	_ = st
	h.hv.mu.Lock()
	h.hv.silent = false
	h.hv.mu.Unlock()
	h.waitFor("a replacement warm VM", warm(1))
	h.hv.mu.Lock()
	defer h.hv.mu.Unlock()
	if len(h.hv.doms) != 1 {
		t.Errorf("%d domains, want only the replacement", len(h.hv.doms))
	}
	if len(h.hv.overlays) != 1 {
		t.Errorf("overlays %v, want only the replacement's", h.hv.overlays)
	}
}

func TestAdoptRollsBackAndForward(t *testing.T) {
	cfg := testConfig(t, 1)
	var srvSet func(*fakeHV)
	h := start(t, cfg, func(hv *fakeHV) {
		ctx := context.Background()
		// A claim cut short before its final document was published:
		// rolled back (destroyed).
		hv.AddDHCPHost(ctx, "pool", "52:54:00:00:00:01", "10.254.0.2", "pw-small-back01")
		hv.imds.Register(ctx, "pw-small-back01", api.Registration{Addresses: []string{"10.254.0.2"}, Labels: map[string]string{LabelPool: "small"}})
		gen, _ := hv.imds.Publish(ctx, "pw-small-back01", []byte(`{"partial": true}`), nil)
		hv.addDomain("pw-small-back01", virt.Meta{Flavor: "small", State: virt.StateClaiming, Path: "warm", MAC: "52:54:00:00:00:01",
			Tap: "pwt00000001", PoolNetwork: "pool", PoolIP: "10.254.0.2", Generation: gen, ClaimID: "back", DocHash: "h1",
			TenantNetwork: "tenant-a", TenantIP: "10.10.1.2"}, virt.NIC{MAC: "52:54:00:00:00:01", Network: "tenant-a"}, false)
		// A claim whose final document is out: rolled forward.
		hv.AddDHCPHost(ctx, "pool", "52:54:00:00:00:02", "10.254.0.3", "pw-small-fwd002")
		hv.AddDHCPHost(ctx, "tenant-a", "52:54:00:00:00:02", "10.10.1.3", "pw-small-fwd002")
		hv.imds.Register(ctx, "pw-small-fwd002", api.Registration{Addresses: []string{"10.254.0.3", "10.10.1.3"}, Labels: map[string]string{LabelPool: "small"}})
		gen, _ = hv.imds.Publish(ctx, "pw-small-fwd002", []byte(`{"partial": true}`), nil)
		hv.imds.Publish(ctx, "pw-small-fwd002", []byte(tenantDoc), nil)
		hv.addDomain("pw-small-fwd002", virt.Meta{Flavor: "small", State: virt.StateClaiming, Path: "warm", MAC: "52:54:00:00:00:02",
			Tap: "pwt00000002", PoolNetwork: "pool", PoolIP: "10.254.0.3", Generation: gen, ClaimID: "fwd", DocHash: "h2",
			TenantNetwork: "tenant-a", TenantIP: "10.10.1.3"}, virt.NIC{MAC: "52:54:00:00:00:02", Network: "tenant-a"}, true)
		// Leftovers no domain owns.
		hv.AddDHCPHost(ctx, "tenant-b", "52:54:00:00:00:03", "10.10.2.2", "pw-small-gone03")
		hv.overlays["pw-small-gone03.qcow2"] = true
		hv.imds.Register(ctx, "pw-small-gone03", api.Registration{Addresses: []string{"10.10.2.2"}, Labels: map[string]string{LabelPool: "small"}})
	})
	_ = srvSet
	h.waitFor("the rolled-forward claim", func(st Status) bool { return st.Flavors[0].Claimed == 1 })
	if _, _, ok := h.hv.domain("pw-small-back01"); ok {
		t.Error("the unpublished claim's VM was not rolled back")
	}
	if _, ok := h.hv.imds.Instance("pw-small-back01"); ok {
		t.Error("the rolled-back VM is still registered")
	}
	meta, _, _ := h.hv.domain("pw-small-fwd002")
	if meta.State != virt.StateClaimed {
		t.Errorf("rolled-forward VM state = %q", meta.State)
	}
	if ip := h.hv.ipOf("tenant-b", "52:54:00:00:00:03"); ip != "" {
		t.Error("orphan reservation left")
	}
	if h.hv.overlays["pw-small-gone03.qcow2"] {
		t.Error("orphan overlay left")
	}
	if _, ok := h.hv.imds.Instance("pw-small-gone03"); ok {
		t.Error("orphan IMDS instance left")
	}
	// A retry of the rolled-forward claim id with its document's hash
	// answers the same VM; the rolled-back id starts a new claim.
	h.waitFor("a warm VM", warm(1))
}

func TestSlotsClaimsNeverWait(t *testing.T) {
	s := newSlots(1)
	ctx := context.Background()
	if err := s.acquire(ctx, false); err != nil { // a refill boots
		t.Fatal(err)
	}
	// A claim's cold boot does not queue behind it.
	if err := s.acquire(ctx, true); err != nil {
		t.Fatal(err)
	}
	if used, _, _ := s.inUse(); used != 2 {
		t.Errorf("used = %d, want 2 (the claim past the cap)", used)
	}
	// A second refill waits until both are done.
	got := make(chan struct{})
	go func() { s.acquire(ctx, false); close(got) }()
	for {
		if _, _, low := s.inUse(); low == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.release()
	select {
	case <-got:
		t.Fatal("a refill started while the cap was still reached")
	case <-time.After(50 * time.Millisecond):
	}
	s.release()
	<-got
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.acquire(cctx, false); err == nil {
		t.Error("a refill acquired past the cap with a done context")
	}
	s.release()
	if used, high, low := s.inUse(); used != 0 || high != 0 || low != 0 {
		t.Errorf("slots after all released: used %d high %d low %d", used, high, low)
	}
}

func TestTimedOutClaimResumesOnRetry(t *testing.T) {
	h := start(t, testConfig(t, 1), nil)
	h.waitFor("1 warm VM", warm(1))
	req := ClaimRequest{Flavor: "small", ClaimID: "slow", TimeoutMS: 1500, Document: json.RawMessage(`{"hostname": "slow-01"}`)}
	_, err := h.c.Claim(context.Background(), req)
	if HTTPStatus(err) != http.StatusGatewayTimeout {
		t.Fatalf("err = %v, want 504", err)
	}
	req.TimeoutMS = 10000
	res, err := h.c.Claim(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replayed || res.Generation != 2 {
		t.Errorf("retry = %+v, want the same claim awaited (generation 2)", res)
	}
	if st := h.c.Status(); st.Flavors[0].Claimed != 1 {
		t.Errorf("claimed = %d, want 1", st.Flavors[0].Claimed)
	}
}

func TestGuestThatMissesTheBounceIsBouncedSlowly(t *testing.T) {
	defer func(a, g time.Duration) { rebounceAfter, slowBounceGap = a, g }(rebounceAfter, slowBounceGap)
	rebounceAfter, slowBounceGap = 300*time.Millisecond, 50*time.Millisecond
	h := start(t, testConfig(t, 1), func(hv *fakeHV) { hv.deaf = true })
	h.waitFor("1 warm VM", warm(1))
	res, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", Document: json.RawMessage(`{"hostname": "x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	// It provisioned over the transit route; it reaches its tenant address
	// only after the slow bounce, and then the claim settles.
	h.waitFor("the claim to settle", func(Status) bool {
		return slices.Equal(registration(t, h.hv.imds, res.VM), []string{res.IP})
	})
	var ups int
	h.hv.mu.Lock()
	for _, c := range h.hv.calls {
		if c == "update-interface "+res.VM+" tenant-a up=true" {
			ups++
		}
	}
	h.hv.mu.Unlock()
	if ups < 2 {
		t.Errorf("link brought up %d times, want the bounce and a slow one", ups)
	}
}

func TestAddressStillLeasedIsSkipped(t *testing.T) {
	h := start(t, testConfig(t, 0), func(hv *fakeHV) {
		hv.leases = map[string]map[netip.Addr]string{"tenant-a": {
			netip.MustParseAddr("10.10.1.2"): "52:54:00:99:99:99", // a released VM's lease
		}}
	})
	res, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", Document: json.RawMessage(`{"hostname": "x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.IP != "10.10.1.3" {
		t.Errorf("ip = %s, want 10.10.1.3 (10.10.1.2 is still leased to another MAC)", res.IP)
	}
	_, err = h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", IP: "10.10.1.2", Document: json.RawMessage(`{"hostname": "y"}`)})
	if HTTPStatus(err) != http.StatusConflict {
		t.Errorf("asking for the leased address: err = %v, want 409", err)
	}
}

func TestBootsPausedDuringAWarmClaim(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.PauseBootsDuringClaims = true
	h := start(t, cfg, func(hv *fakeHV) {
		ctx := context.Background()
		// A VM that is still booting (its guest never reports).
		hv.AddDHCPHost(ctx, "pool", "52:54:00:00:00:09", "10.254.0.9", "pw-small-boot09")
		hv.imds.Register(ctx, "pw-small-boot09", api.Registration{Addresses: []string{"10.254.0.9"}, Labels: map[string]string{LabelPool: "small"}})
		gen, _ := hv.imds.Publish(ctx, "pw-small-boot09", []byte(`{"partial": true}`), nil)
		hv.addDomain("pw-small-boot09", virt.Meta{Flavor: "small", State: virt.StateBooting, Path: "warm", MAC: "52:54:00:00:00:09",
			Tap: "pwt00000009", PoolNetwork: "pool", PoolIP: "10.254.0.9", Generation: gen, Created: time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")},
			virt.NIC{MAC: "52:54:00:00:00:09", Network: "pool", Up: true}, false)
	})
	h.waitFor("1 warm and 1 booting", func(st Status) bool { return st.Flavors[0].Warm == 1 && st.Flavors[0].Booting == 1 })
	if _, err := h.c.Claim(context.Background(), ClaimRequest{Flavor: "small", Document: json.RawMessage(`{"hostname": "x"}`)}); err != nil {
		t.Fatal(err)
	}
	h.hv.mu.Lock()
	calls := slices.Clone(h.hv.calls)
	h.hv.mu.Unlock()
	si, ri := slices.Index(calls, "suspend pw-small-boot09"), slices.Index(calls, "resume pw-small-boot09")
	if si < 0 || ri < si {
		t.Errorf("calls %q: want the booting VM suspended during the claim and resumed after", calls)
	}
}
