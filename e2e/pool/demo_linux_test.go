package pool

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/pool/controller"
)

// TestPoolDemo is `make demo-pool`: a pool of 2 warm VMs booting from the
// golden image, a claim with its timing breakdown, what the guest says
// about itself, and the refill. Each line it logs is the narration.
func TestPoolDemo(t *testing.T) {
	if os.Getenv("PREWARM_POOL_DEMO") != "1" {
		t.Skip("the pool demo runs with PREWARM_POOL_DEMO=1 (make demo-pool)")
	}
	h := NewT(t, Options{Log: func(string, ...any) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	t0 := time.Now()
	say := func(format string, args ...any) {
		t.Logf("[%6.1fs] %s", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	say("a private libvirt (libvirtd, virtlogd, prewarm-imds) runs in its own namespaces: %s", h.Lab.Dir)
	say("prewarm-pool serve --config %s  (flavor %q: 1 vCPU, 512 MiB, 2 warm; networks %s, %s, %s)", h.Config, Flavor, PoolNet, TenantA, TenantB)
	if err := h.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	// Narrate the pool's changes until it is full.
	watch := func(until func(controller.FlavorStatus) bool) {
		last := ""
		if _, err := h.WaitStatus(ctx, "the pool", func(st controller.Status) bool {
			f := FlavorStatus(st)
			line := fmt.Sprintf("pool %q: %d warm, %d booting, %d claimed (target %d)", f.Name, f.Warm, f.Booting, f.Claimed, f.Target)
			if f.LastBootMS > 0 {
				line += fmt.Sprintf(", last boot → partial-ready %.1f s", float64(f.LastBootMS)/1000)
			}
			if line != last {
				say("%s", line)
				last = line
			}
			return until(f)
		}); err != nil {
			t.Fatal(err)
		}
	}
	say("the controller defines 2 VMs on qcow2 overlays of the golden image, registers them with the IMDS, publishes the placeholder (partial) document, boots them")
	watch(func(f controller.FlavorStatus) bool { return f.Warm >= 2 })

	doc := benchDoc(h, "shop-web-01")
	say(`a tenant asks: prewarm-pool claim %s --config doc.json   (hostname shop-web-01, user "tenant" with an SSH key and sudo, time zone Europe/Berlin)`, Flavor)
	r, err := h.Claim(ctx, doc, "--network", TenantA, "--claim-id", "demo-1", "--timeout", "300s")
	if err != nil {
		t.Fatal(err)
	}
	tm := r.Timings
	say("claimed in %d ms: VM %s (MAC %s) now on %s at %s, path %s", tm.TotalMS, r.VM, r.MAC, r.Network, r.IP, r.Path)
	say("  where the time went (ms since the claim): picked %d · re-mapped to the tenant network %d · final document published %d · NIC bounced %d · DHCP renewed %d · provisioned %d  (the agent's apply steps: %d ms)",
		tm.PickedMS, tm.RemappedMS, tm.PublishedMS, tm.BouncedMS, tm.RenewedMS, tm.ProvisionedMS, tm.AppliedMS)
	// The tenant address comes with the guest's DHCP renewal, which may
	// land after provisioned: try for up to a minute and say how long.
	var out string
	for start, tries := time.Now(), 1; ; tries++ {
		out, err = h.SSH(ctx, "tenant", r.IP, `echo "$(hostname) · $(readlink /etc/localtime | sed s,.*zoneinfo/,,) · $(id -nG) · $(ip -4 -o addr show dev eth0 | awk '{print $4}' | tr '\n' ' ')"`)
		if err == nil {
			if tries > 1 {
				say("(its tenant address answered at the %d. try, %.1f s after the claim returned)", tries, time.Since(start).Seconds())
			}
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	say("ssh tenant@%s (the key from the document): %s", r.IP, strings.TrimSpace(out))
	say("the pool refills behind the claim:")
	watch(func(f controller.FlavorStatus) bool { return f.Warm >= 2 })
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	say("done: a warm VM became the tenant's in %.1f s; booting one to the same point took %.1f s (the last refill, boot → partial-ready, before any claim work); make bench-pool measures both properly",
		float64(tm.TotalMS)/1000, float64(FlavorStatus(st).LastBootMS)/1000)
}
