package controller

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// adoptedClaim puts a VM in place as a controller killed mid-claim leaves
// it: claiming, its final document published (over partial generation 1),
// its pool reservation made; the caller adds what else had happened.
func adoptedClaim(hv *fakeHV, name, mac, poolIP, tenantIP string) virt.Meta {
	ctx := context.Background()
	hv.AddDHCPHost(ctx, "pool", mac, poolIP, name)
	hv.imds.Register(ctx, name, api.Registration{Addresses: []string{poolIP}, Labels: map[string]string{LabelPool: "small"}})
	gen, _ := hv.imds.Publish(ctx, name, []byte(`{"partial": true}`), nil)
	hv.imds.Publish(ctx, name, []byte(tenantDoc), nil)
	return virt.Meta{Flavor: "small", State: virt.StateClaiming, Path: "warm", MAC: mac, Tap: "pwt" + mac[len(mac)-2:],
		PoolNetwork: "pool", PoolIP: poolIP, Generation: gen, ClaimID: "claim-" + name[len(name)-2:], DocHash: "h",
		TenantNetwork: "tenant-a", TenantIP: tenantIP}
}

// reservedAndRegistered does what a claim does beside its publish: the
// tenant reservation and the registration of both addresses.
func reservedAndRegistered(hv *fakeHV, name string, m virt.Meta) {
	ctx := context.Background()
	hv.AddDHCPHost(ctx, "tenant-a", m.MAC, m.TenantIP, name)
	hv.imds.Register(ctx, name, api.Registration{Addresses: []string{m.PoolIP, m.TenantIP}, Labels: map[string]string{LabelPool: "small"}})
}

// postReports sends reports (numbered from 1) as the guest at ip.
func postReports(t *testing.T, hv *fakeHV, ip string, reports ...status.Report) {
	t.Helper()
	for i, r := range reports {
		r.Seq, r.Time, r.AgentVersion = uint64(i+1), status.Time{Time: time.Now()}, "fake"
		b, _ := json.Marshal(r)
		if code, _, body := hv.do(ip, "POST", "/metadata/v1/status", "", string(b)); code/100 != 2 {
			t.Fatalf("report %d: %d %s", i+1, code, body)
		}
	}
}

// A claim makes the tenant reservation and the registration of both
// addresses beside its publish: a controller killed then can leave the
// document out without them. Rolled forward, the claim makes sure of both.
func TestResumedClaimRestoresReservationAndRegistration(t *testing.T) {
	h := start(t, testConfig(t, 1), func(hv *fakeHV) {
		ctx := context.Background()
		// Re-mapped and reserved (libvirt finished the updates the
		// controller had sent) but not registered (the IMDS dropped the
		// write when the controller's connection died): the guest, still
		// on its pool address, renews to its tenant address, which the
		// IMDS does not know.
		hv.noTransit = true
		m := adoptedClaim(hv, "pw-small-reg001", "52:54:00:00:00:01", "10.254.0.2", "10.10.1.2")
		hv.AddDHCPHost(ctx, "tenant-a", m.MAC, m.TenantIP, "pw-small-reg001")
		hv.addDomain("pw-small-reg001", m, virt.NIC{MAC: m.MAC, Network: "tenant-a"}, true, func(d *fakeDom) { d.ip = m.PoolIP })
		// Neither reserved nor registered: the NIC was never re-mapped.
		m = adoptedClaim(hv, "pw-small-res002", "52:54:00:00:00:02", "10.254.0.3", "10.10.1.3")
		hv.addDomain("pw-small-res002", m, virt.NIC{MAC: m.MAC, Network: "pool", Up: true}, true)
	})
	h.waitFor("both claims rolled forward", func(st Status) bool { return st.Flavors[0].Claimed == 2 })
	for name, ip := range map[string]string{"pw-small-reg001": "10.10.1.2", "pw-small-res002": "10.10.1.3"} {
		_, nic, _ := h.hv.domain(name)
		if got := h.hv.ipOf("tenant-a", nic.MAC); got != ip {
			t.Errorf("%s: tenant reservation %q, want %s", name, got, ip)
		}
		h.waitFor(name+" settled on its tenant address", func(Status) bool {
			return slices.Equal(registration(t, h.hv.imds, name), []string{ip})
		})
	}
}

// Reports from before a resumed claim's bounce (here the boot's DHCP
// renewal, to the pool address) are no news of the bounce: a guest that
// misses it is still bounced slowly.
func TestResumedClaimIgnoresTheBootsRenewal(t *testing.T) {
	defer func(a, g time.Duration) { rebounceAfter, slowBounceGap = a, g }(rebounceAfter, slowBounceGap)
	rebounceAfter, slowBounceGap = 300*time.Millisecond, 50*time.Millisecond
	const name, mac = "pw-small-deaf01", "52:54:00:00:00:01"
	h := start(t, testConfig(t, 1), func(hv *fakeHV) {
		m := adoptedClaim(hv, name, mac, "10.254.0.2", "10.10.1.2")
		reservedAndRegistered(hv, name, m)
		postReports(t, hv, m.PoolIP, status.Report{Generation: 1, State: status.StatePartialReady,
			Event: status.EventDHCPRenewed, Interface: "eth0", Addresses: []string{m.PoolIP + "/24"}})
		// The NIC was re-mapped; the guest misses the resumed claim's
		// bounce and, without a transit route, reaches nothing from its
		// pool address.
		hv.noTransit = true
		hv.addDomain(name, m, virt.NIC{MAC: mac, Network: "tenant-a"}, true, func(d *fakeDom) {
			d.deaf, d.seq, d.ip = true, 1, m.PoolIP
		})
	})
	h.waitFor("the claim rolled forward", func(st Status) bool { return st.Flavors[0].Claimed == 1 })
	var ups int
	h.hv.mu.Lock()
	for _, c := range h.hv.calls {
		if c == "update-interface "+name+" tenant-a up=true" {
			ups++
		}
	}
	h.hv.mu.Unlock()
	if ups < 2 {
		t.Errorf("link brought up %d times, want the resumed bounce and a slow one", ups)
	}
}

// Reports from before the restart count for the outcome: a guest that
// reported provisioned for the claim's generation before the controller
// came back (and says nothing more) completes the resumed claim.
func TestResumedClaimCountsAnEarlierProvisioned(t *testing.T) {
	const name, mac = "pw-small-done01", "52:54:00:00:00:01"
	h := start(t, testConfig(t, 1), func(hv *fakeHV) {
		m := adoptedClaim(hv, name, mac, "10.254.0.2", "10.10.1.2")
		reservedAndRegistered(hv, name, m)
		postReports(t, hv, m.TenantIP,
			status.Report{Generation: 2, State: status.StateProvisioned},
			status.Report{Generation: 2, State: status.StateProvisioned, Event: status.EventDHCPRenewed, Interface: "eth0", Addresses: []string{m.TenantIP + "/24"}})
		hv.addDomain(name, m, virt.NIC{MAC: mac, Network: "tenant-a"}, false)
	})
	h.waitFor("the claim rolled forward", func(st Status) bool { return st.Flavors[0].Claimed == 1 })
	h.waitFor("the claim settled on its tenant address", func(Status) bool {
		return slices.Equal(registration(t, h.hv.imds, name), []string{"10.10.1.2"})
	})
}
