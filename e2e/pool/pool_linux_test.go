package pool

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/pool/controller"
)

// finalDoc is a tenant's final document: host name, a user with the
// harness's key and sudo, a time zone, and the tenant address plus a static
// extra one on the primary NIC.
func finalDoc(h *Harness, hostname, ip string, prefix int, extra string) map[string]any {
	return map[string]any{
		"hostname": hostname,
		"timezone": "Europe/Berlin",
		"users": []map[string]any{{
			"name": "tenant", "groups": []string{"sudo"}, "sudo": "nopasswd", "shell": "/bin/bash",
			"sshAuthorizedKeys": []string{h.PubKey()},
		}},
		"network": map[string]any{"interfaces": []map[string]any{{
			"mac": "primary", "dhcp4": false,
			"addresses": []string{fmt.Sprintf("%s/%d", ip, prefix), extra},
		}}},
	}
}

func logClaim(t *testing.T, what string, r controller.ClaimResult) {
	tm := r.Timings
	t.Logf("%s: vm %s mac %s %s ip %s path %s: picked %d remapped %d published %d bounced %d renewed %d provisioned %d total %d ms (agent applied %d ms)",
		what, r.VM, r.MAC, r.Network, r.IP, r.Path, tm.PickedMS, tm.RemappedMS, tm.PublishedMS, tm.BouncedMS, tm.RenewedMS, tm.ProvisionedMS, tm.TotalMS, tm.AppliedMS)
}

// reach reports whether a TCP connection from the guest at ip (as user
// tenant) to dst:port opens within 3 s.
func reach(ctx context.Context, h *Harness, from, dst string, port int) (bool, error) {
	out, err := h.SSH(ctx, "tenant", from, fmt.Sprintf(
		"if timeout 3 bash -c '</dev/tcp/%s/%d' 2>/dev/null; then echo OPEN; else echo CLOSED; fi", dst, port))
	if err != nil {
		return false, err
	}
	switch strings.TrimSpace(out) {
	case "OPEN":
		return true, nil
	case "CLOSED":
		return false, nil
	}
	return false, fmt.Errorf("reach %s:%d from %s: unexpected %q", dst, port, from, out)
}

func vmsByClaim(st controller.Status, claimID string) []controller.VMStatus {
	var out []controller.VMStatus
	for _, v := range st.VMs {
		if v.ClaimID == claimID {
			out = append(out, v)
		}
	}
	return out
}

// TestPool is issue 16's end-to-end test, in one lab so the VMs are booted
// once: a pool of 2 warm VMs; a claim whose document is proven inside the
// guest; a second claim while the refill boots; a cold claim when the pool
// is empty; tenant isolation; the refill back to 2; the controller killed
// with SIGKILL mid-claim and restarted (the claim completes or is rolled
// back, never handed out twice); release.
func TestPool(t *testing.T) {
	h := NewT(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	h.Step("serve, await 2 warm VMs")
	if err := h.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.WaitWarm(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 warm VMs after %v (last boot %d ms)", time.Since(start).Round(time.Second), FlavorStatus(st).LastBootMS)
	warm := map[string]controller.VMStatus{}
	for _, v := range st.VMs {
		if v.State == "warm" {
			warm[v.Name] = v
			if v.Network != PoolNet {
				t.Errorf("warm VM %s is on %q, want the pool network %s", v.Name, v.Network, PoolNet)
			}
		}
	}

	// Each VM made its own SSH host key at first boot.
	h.Step("host keys of the warm VMs")
	keys := map[string]string{}
	for name, v := range warm {
		k, err := h.HostKey(ctx, v.IP)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for other, ok := range keys {
			if ok == k {
				t.Errorf("VMs %s and %s have the same SSH host key: the image shipped one", name, other)
			}
		}
		keys[name] = k
	}

	// Claim A on tenant A; B (tenant B) right after, while A's refill
	// boots; C at once, with the pool empty: cold.
	h.Step("claim A (warm)")
	a, err := h.Claim(ctx, finalDoc(h, "tenant-a-web", "10.10.1.50", 24, "192.0.2.10/24"),
		"--network", TenantA, "--ip", "10.10.1.50", "--claim-id", "claim-a", "--timeout", "120s")
	if err != nil {
		t.Fatal(err)
	}
	logClaim(t, "claim A", a)
	h.Step("claim B (warm, refill booting)")
	b, err := h.Claim(ctx, finalDoc(h, "tenant-b-db", "10.10.2.60", 24, "198.51.100.20/24"),
		"--network", TenantB, "--ip", "10.10.2.60", "--claim-id", "claim-b", "--timeout", "120s")
	if err != nil {
		t.Fatal(err)
	}
	logClaim(t, "claim B (refill booting)", b)
	h.Step("claim C (cold) started in the background")
	var c controller.ClaimResult
	var cErr error
	var cWG sync.WaitGroup
	cWG.Add(1)
	go func() {
		defer cWG.Done()
		c, cErr = h.Claim(ctx, finalDoc(h, "tenant-a-cold", "10.10.1.70", 24, "192.0.2.70/24"),
			"--network", TenantA, "--ip", "10.10.1.70", "--claim-id", "claim-c", "--timeout", "240s")
	}()

	for _, r := range []controller.ClaimResult{a, b} {
		if r.Path != "warm" {
			t.Errorf("claim %s: path %q, want warm (a pooled VM)", r.ClaimID, r.Path)
		}
		if _, ok := warm[r.VM]; !ok {
			t.Errorf("claim %s got VM %s, not one of the warm VMs %v", r.ClaimID, r.VM, warm)
		}
	}
	if a.VM == b.VM {
		t.Fatalf("claims A and B got the same VM %s", a.VM)
	}
	if a.IP != "10.10.1.50" || a.Network != TenantA || b.IP != "10.10.2.60" || b.Network != TenantB {
		t.Errorf("claims A %s %s, B %s %s: want 10.10.1.50 on %s, 10.10.2.60 on %s", a.Network, a.IP, b.Network, b.IP, TenantA, TenantB)
	}
	if a.Timings.TotalMS <= 0 || a.Timings.ProvisionedMS > a.Timings.TotalMS || a.Timings.BouncedMS > a.Timings.TotalMS {
		t.Errorf("claim A's breakdown is inconsistent: %+v", a.Timings)
	}

	// Inside guest A: what the document asked for, checked as the user it
	// created, logged in with the key it installed.
	h.Step("inside guest A over SSH")
	out, err := h.SSH(ctx, "tenant", a.IP, "hostname; readlink /etc/localtime; ip -4 -o addr show dev eth0 | awk '{print $4}'; id -nG; sudo -n true && echo SUDO-OK")
	if err != nil {
		t.Fatalf("guest A: %v\n---- console of %s ----\n%s", err, a.VM, h.Console(a.VM))
	}
	t.Logf("inside guest A:\n%s", out)
	for _, want := range []string{"tenant-a-web\n", "/usr/share/zoneinfo/Europe/Berlin\n", "10.10.1.50/24\n", "192.0.2.10/24\n", "sudo", "SUDO-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest A lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	if kA, err := h.HostKey(ctx, a.IP); err != nil || kA != keys[a.VM] {
		t.Errorf("guest A at %s answers with host key %q (%v), want the key its VM %s had while warm", a.IP, kA, err, a.VM)
	}

	// Tenant isolation: A reaches the IMDS but neither B nor the pool
	// network (its gateway, and a warm VM once one is back).
	h.Step("tenant isolation")
	if ok, err := reach(ctx, h, a.IP, "169.254.169.254", 80); err != nil || !ok {
		t.Errorf("guest A cannot reach the IMDS (control): %v %v", ok, err)
	}
	if ok, err := reach(ctx, h, b.IP, "169.254.169.254", 80); err != nil || !ok {
		t.Errorf("guest B cannot reach the IMDS (control): %v %v", ok, err)
	}
	for _, dst := range []string{b.IP, "198.51.100.20", "10.254.0.1"} {
		if ok, err := reach(ctx, h, a.IP, dst, 22); err != nil || ok {
			t.Errorf("guest A (tenant A) reaches %s:22: open=%v err=%v; tenants must be isolated", dst, ok, err)
		}
	}
	if ok, err := reach(ctx, h, b.IP, a.IP, 22); err != nil || ok {
		t.Errorf("guest B (tenant B) reaches guest A %s:22: open=%v err=%v", a.IP, ok, err)
	}

	h.Step("await claim C (cold)")
	cWG.Wait()
	if cErr != nil {
		t.Fatalf("claim C (pool empty): %v", cErr)
	}
	logClaim(t, "claim C (pool empty)", c)
	if c.Path != "cold" {
		t.Errorf("claim C with the pool empty: path %q, want cold", c.Path)
	}
	if out, err := h.SSH(ctx, "tenant", c.IP, "hostname"); err != nil || strings.TrimSpace(out) != "tenant-a-cold" {
		t.Errorf("cold guest C: hostname %q, %v; want tenant-a-cold", out, err)
	}
	// C and A share tenant A's network: they see each other.
	if ok, err := reach(ctx, h, a.IP, c.IP, 22); err != nil || !ok {
		t.Errorf("guest A cannot reach guest C on the same tenant network (control): %v %v", ok, err)
	}

	// Refill: back to 2 warm VMs.
	h.Step("refill to 2 warm VMs")
	st, err = h.WaitWarm(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("refilled to 2 warm VMs after %v", time.Since(start).Round(time.Second))
	for _, v := range st.VMs {
		if v.State == "warm" {
			if ok, err := reach(ctx, h, a.IP, v.IP, 22); err != nil || ok {
				t.Errorf("guest A reaches warm VM %s at %s:22 on the pool network: open=%v err=%v", v.Name, v.IP, ok, err)
			}
			break
		}
	}

	// SIGKILL the controller while a claim is in flight, restart it, retry
	// the claim with its id: it completes (same VM) or was rolled back and
	// is served anew, and no VM carries the claim twice.
	h.Step("claim-kill started; await it in flight")
	doc := finalDoc(h, "tenant-a-kill", "10.10.1.90", 24, "192.0.2.90/24")
	claimErr := make(chan error, 1)
	go func() {
		_, err := h.Claim(ctx, doc, "--network", TenantA, "--ip", "10.10.1.90", "--claim-id", "claim-kill", "--timeout", "120s")
		claimErr <- err
	}()
	if _, err := h.WaitStatus(ctx, "claim-kill in flight", func(st controller.Status) bool {
		for _, v := range vmsByClaim(st, "claim-kill") {
			if v.State == "claiming" {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	h.Step("SIGKILL the controller")
	if err := h.KillServe(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Log("controller killed with SIGKILL during claim-kill")
	if err := <-claimErr; err == nil {
		t.Log("the in-flight claim had already returned")
	}
	h.Step("restart the controller")
	if err := h.Serve(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	h.Step("retry claim-kill")
	k, err := h.Claim(ctx, doc, "--network", TenantA, "--ip", "10.10.1.90", "--claim-id", "claim-kill", "--timeout", "240s")
	if err != nil {
		var where strings.Builder
		if st, serr := h.Status(ctx); serr == nil {
			for _, v := range vmsByClaim(st, "claim-kill") {
				fmt.Fprintf(&where, "\n---- %s (%s, %s), console tail ----\n%s", v.Name, v.State, v.IP, h.ConsoleTail(v.Name, 40))
			}
		}
		t.Fatalf("claim-kill retried after the restart: %v%s", err, where.String())
	}
	logClaim(t, "claim-kill after restart", k)
	st, err = h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := vmsByClaim(st, "claim-kill"); len(got) != 1 || got[0].Name != k.VM {
		t.Errorf("VMs carrying claim-kill after the restart: %+v; want exactly %s", got, k.VM)
	}
	seen := map[string]string{}
	for _, v := range st.VMs {
		if v.ClaimID == "" {
			continue
		}
		if prev, ok := seen[v.ClaimID]; ok {
			t.Errorf("claim %s is on two VMs: %s and %s", v.ClaimID, prev, v.Name)
		}
		seen[v.ClaimID] = v.Name
	}
	for _, r := range []controller.ClaimResult{a, b, c} {
		if seen[r.ClaimID] != r.VM {
			t.Errorf("after the restart claim %s is on %q, want %s", r.ClaimID, seen[r.ClaimID], r.VM)
		}
	}
	if out, err := h.SSH(ctx, "tenant", k.IP, "hostname"); err != nil || strings.TrimSpace(out) != "tenant-a-kill" {
		t.Errorf("guest of claim-kill: hostname %q, %v; want tenant-a-kill", out, err)
	}
	// A retry of a finished claim returns the same VM; the same id with
	// another document is refused.
	if again, err := h.Claim(ctx, doc, "--network", TenantA, "--ip", "10.10.1.90", "--claim-id", "claim-kill"); err != nil || again.VM != k.VM {
		t.Errorf("retry of claim-kill: %s, %v; want %s", again.VM, err, k.VM)
	}
	if _, err := h.Claim(ctx, finalDoc(h, "other", "10.10.1.91", 24, "192.0.2.91/24"), "--claim-id", "claim-kill"); err == nil {
		t.Error("claim-kill reused with another document was accepted")
	}

	// Release A: its domain goes, the pool is not affected.
	h.Step("release A")
	if _, err := h.Pool(ctx, "release", a.VM); err != nil {
		t.Fatal(err)
	}
	st, err = h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st.VMs {
		if v.Name == a.VM {
			t.Errorf("released VM %s is still listed: %+v", a.VM, v)
		}
	}
	if out, _ := h.Lab.Virsh(ctx, "list", "--all", "--name"); strings.Contains(out, a.VM) {
		t.Errorf("released VM %s is still a libvirt domain:\n%s", a.VM, out)
	}
}
