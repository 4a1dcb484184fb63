package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/pool/controller"
)

// benchDoc is the tenant document of every benchmark claim: host name,
// time zone, a user with a key and sudo (DHCP keeps the address).
func benchDoc(h *Harness, name string) map[string]any {
	return map[string]any{
		"hostname": name,
		"timezone": "Europe/Berlin",
		"users": []map[string]any{{
			"name": "tenant", "groups": []string{"sudo"}, "sudo": "nopasswd",
			"sshAuthorizedKeys": []string{h.PubKey()},
		}},
	}
}

type benchClaim struct {
	WallMS int64                  `json:"wallMs"`
	Result controller.ClaimResult `json:"result"`
}

func p50(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// TestPoolBench is `make bench-pool`: on one golden image, in one lab, N
// cold claims (a flavor with no warm VMs: define + boot with the final
// document published before boot → provisioned) against N claims of a warm
// VM (→ provisioned), sequential, each started with nothing booting, and a
// burst of 4 concurrent warm claims. Claimed VMs are released at once. It
// writes pool-bench.json in the repository root; its summary line is the
// last line `make bench-pool` prints.
func TestPoolBench(t *testing.T) {
	if os.Getenv("PREWARM_POOL_BENCH") != "1" {
		t.Skip("the pool benchmark runs with PREWARM_POOL_BENCH=1 (make bench-pool)")
	}
	n := 5
	if v, err := strconv.Atoi(os.Getenv("PREWARM_POOL_N")); err == nil && v > 0 {
		n = v
	}
	const burst = 4
	h := NewT(t, Options{Warm: burst, ColdFlavor: true})
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Minute)
	defer cancel()
	loadStart := loadavg()
	start := time.Now()
	if err := h.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	// Each claim starts from a quiet lab: nothing booting, the pool full,
	// and the guests settled (a VM keeps booting for a while after
	// partial-ready; an idle TCG guest uses under 1% of a core).
	quiet := func(what string) {
		t.Helper()
		if _, err := h.WaitStatus(ctx, what, func(st controller.Status) bool { return Quiet(st, burst) }); err != nil {
			t.Fatal(err)
		}
		if d, c := h.Settle(ctx, 15, 3*time.Minute); d > 2*time.Second || c >= 15 {
			t.Logf("(guests settled in %v: %.0f%% of a core)", d.Round(time.Second), c)
		}
	}
	quiet("the pool filled")
	t.Logf("pool of %d warm VMs filled in %v (load %s)", burst, time.Since(start).Round(time.Second), loadavg())

	// Every claim its own tenant address: a released VM's DHCP lease
	// outlives it in libvirt's dnsmasq (an hour), which then will not hand
	// that address to another MAC.
	var ipMu sync.Mutex
	nextIP := 20
	claim := func(flavor, name string) benchClaim {
		t.Helper()
		ipMu.Lock()
		ip := fmt.Sprintf("10.10.1.%d", nextIP)
		nextIP++
		ipMu.Unlock()
		t0 := time.Now()
		r, err := h.ClaimFlavor(ctx, flavor, benchDoc(h, name), "--network", TenantA, "--ip", ip, "--claim-id", name, "--timeout", "600s")
		wall := time.Since(t0).Milliseconds()
		if err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
		tm := r.Timings
		t.Logf("%-8s %s path %-4s wall %6d ms | picked %d remapped %d published %d bounced %d renewed %d provisioned %d total %d (agent applied %d) | load %s",
			name, r.VM, r.Path, wall, tm.PickedMS, tm.RemappedMS, tm.PublishedMS, tm.BouncedMS, tm.RenewedMS, tm.ProvisionedMS, tm.TotalMS, tm.AppliedMS, loadavg())
		return benchClaim{WallMS: wall, Result: r}
	}
	release := func(c benchClaim) {
		t.Helper()
		if _, err := h.Pool(ctx, "release", c.Result.VM); err != nil {
			t.Fatal(err)
		}
	}

	var warm, cold, bursts []benchClaim
	for i := range n {
		quiet("a quiet, full pool")
		c := claim(Flavor, fmt.Sprintf("warm-%d", i+1))
		if c.Result.Path != "warm" {
			t.Fatalf("claim %s took path %q, want warm", c.Result.ClaimID, c.Result.Path)
		}
		warm = append(warm, c)
		release(c)
	}
	quiet("a quiet, full pool before the burst")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := claim(Flavor, fmt.Sprintf("burst-%d", i+1))
			mu.Lock()
			bursts = append(bursts, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, c := range bursts {
		if c.Result.Path != "warm" {
			t.Errorf("burst claim %s took path %q, want warm", c.Result.ClaimID, c.Result.Path)
		}
		release(c)
	}
	for i := range n {
		quiet("nothing booting before a cold claim")
		c := claim(ColdFlavor, fmt.Sprintf("cold-%d", i+1))
		if c.Result.Path != "cold" {
			t.Fatalf("claim %s of the flavor without warm VMs took path %q, want cold", c.Result.ClaimID, c.Result.Path)
		}
		cold = append(cold, c)
		release(c)
	}

	walls := func(cs []benchClaim) []int64 {
		var v []int64
		for _, c := range cs {
			v = append(v, c.WallMS)
		}
		return v
	}
	phase := func(f func(controller.Timings) int64) int64 {
		var v []int64
		for _, c := range warm {
			v = append(v, f(c.Result.Timings))
		}
		return p50(v)
	}
	coldP50, claimP50 := p50(walls(cold)), p50(walls(warm))
	claimMax := slices.Max(append(walls(warm), walls(bursts)...))
	ratio := float64(coldP50) / float64(max(claimP50, 1))
	summary := fmt.Sprintf("pool-bench: cold p50 %d ms, claim p50 %d ms, claim max %d ms, ratio %.1fx", coldP50, claimP50, claimMax, ratio)
	report := map[string]any{
		"n": n, "burst": burst,
		"coldP50Ms": coldP50, "coldMaxMs": slices.Max(walls(cold)),
		"claimP50Ms": claimP50, "claimMaxMs": claimMax,
		"claimSequentialMaxMs": slices.Max(walls(warm)),
		"burstP50Ms":           p50(walls(bursts)), "burstMaxMs": slices.Max(walls(bursts)),
		"ratio": float64(int(ratio*10)) / 10,
		"claimPhaseP50Ms": map[string]int64{
			"picked":       phase(func(t controller.Timings) int64 { return t.PickedMS }),
			"remapped":     phase(func(t controller.Timings) int64 { return t.RemappedMS }),
			"published":    phase(func(t controller.Timings) int64 { return t.PublishedMS }),
			"bounced":      phase(func(t controller.Timings) int64 { return t.BouncedMS }),
			"renewed":      phase(func(t controller.Timings) int64 { return t.RenewedMS }),
			"provisioned":  phase(func(t controller.Timings) int64 { return t.ProvisionedMS }),
			"total":        phase(func(t controller.Timings) int64 { return t.TotalMS }),
			"agentApplied": phase(func(t controller.Timings) int64 { return t.AppliedMS }),
		},
		"cold": cold, "claims": warm, "bursts": bursts,
		"loadavgStart": loadStart, "loadavgEnd": loadavg(),
		"durationS": int(time.Since(start).Seconds()),
		"summary":   summary,
	}
	data, _ := json.MarshalIndent(report, "", "  ")
	path := filepath.Join(RepoRoot(), "pool-bench.json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (load average %s → %s, %v)", path, loadStart, loadavg(), time.Since(start).Round(time.Second))
	fmt.Println(summary)
}
