package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

func renewReports(rs []status.Report) []status.Report {
	var out []status.Report
	for _, r := range rs {
		if r.Event == status.EventDHCPRenewed {
			out = append(out, r)
		}
	}
	return out
}

// TestFlapStormDebounced: 50 flaps of eth0 in quick succession yield one
// renewal once the link is stable (at most 2 allowed), reported as a
// dhcp-renewed event with the new addresses, after which the agent
// re-establishes its IMDS connection at once (the parked poll is cut and
// redialled).
func TestFlapStormDebounced(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	// Wait for the agent to park its long-poll for the next generation.
	h.imds.waitFor("parked poll", func(_ []status.Report, reqs []request) bool { return len(configGets(reqs)) >= 1 })
	getsBefore := len(configGets(h.imds.reqs()))

	for i := range 50 {
		h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: uint32(2 * i)}
		h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: uint32(2*i + 1)}
	}
	flapsDone := time.Now()
	h.imds.waitFor("dhcp-renewed", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) >= 1 })
	if d := time.Since(flapsDone); d < 90*time.Millisecond {
		t.Errorf("renewed %v after the storm, before the 100 ms debounce", d)
	}
	r := renewReports(h.imds.all())[0]
	if r.Interface != "eth0" || len(r.Addresses) != 1 || r.Addresses[0] != "10.0.0.5/24" || r.State != status.StateProvisioned || r.Generation != g {
		t.Errorf("dhcp-renewed report %+v", r)
	}
	// The reconnect: a new config request right after the renewal, long
	// before the 5 s long-poll timeout would have produced one.
	h.imds.waitFor("re-established poll", func(_ []status.Report, reqs []request) bool {
		gets := configGets(reqs)
		return len(gets) > getsBefore && gets[len(gets)-1].Time.Sub(flapsDone) < 2*time.Second
	})
	// Settle, event-driven: a flap of eth9 queued behind the storm is due
	// later than any renewal the storm could still cause, so once eth9's
	// renewal is reported every eth0 renewal has happened.
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth9"}
	h.imds.waitFor("eth9 renewal", func(rs []status.Report, _ []request) bool {
		for _, r := range renewReports(rs) {
			if r.Interface == "eth9" {
				return true
			}
		}
		return false
	})
	n := 0
	for _, r := range renewReports(h.imds.all()) {
		if r.Interface == "eth0" {
			n++
		}
	}
	if n < 1 || n > 2 {
		t.Errorf("%d renewals of eth0 after 50 flaps, want 1 (at most 2)", n)
	}
	checkSeq(t, h.imds.all())
}

// TestQuietBounceRenewsAtOnce: the single NIC bounce of a claim, on a link
// that was quiet, is renewed once the carrier has settled, without waiting
// out the storm debounce; a second bounce right after it waits for the
// debounce, and the storm rule still yields one more renewal at most.
func TestQuietBounceRenewsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(o *Options) {
		o.LinkSettle = 20 * time.Millisecond
		o.LinkDebounce = time.Hour // a renewal that waits for it never comes in this test
	}
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0"}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0"}
	h.imds.waitFor("dhcp-renewed after a quiet bounce", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 1 })
	// A second bounce within the debounce is held back by it.
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0"}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0"}
	// Another interface's quiet bounce is renewed at once, and it was
	// queued behind eth0's: once it is reported, eth0's second bounce has
	// been handled (and must not have renewed).
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth9"}
	h.imds.waitFor("eth9 renewal", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) >= 2 })
	rs := renewReports(h.imds.all())
	if len(rs) != 2 || rs[0].Interface != "eth0" || rs[1].Interface != "eth9" {
		t.Errorf("renewals %+v, want eth0 then eth9 only", rs)
	}
}

// TestRenewDHCPCounter: network.renewDhcp renews every DHCP interface when
// it changes, not when it stays the same, and not again after a restart.
func TestRenewDHCPCounter(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0", "eth1"}
	h.start()
	g1 := h.imds.publish(`{"network": {"renewDhcp": 1}}`)
	h.imds.waitFor("two renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 2 })
	rr := renewReports(h.imds.all())
	if rr[0].Interface != "eth0" || rr[1].Interface != "eth1" {
		t.Errorf("renewed %s then %s", rr[0].Interface, rr[1].Interface)
	}
	if h.imds.waitReport(status.StateProvisioned, g1).Seq > rr[0].Seq {
		t.Error("renewal reported before the generation's outcome")
	}
	h.stop()
	h.start()
	g2 := h.imds.publish(`{"network": {"renewDhcp": 1}, "timezone": "UTC"}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	g3 := h.imds.publish(`{"network": {"renewDhcp": 2}}`)
	h.imds.waitReport(status.StateProvisioned, g3)
	h.imds.waitFor("four renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 4 })
	h.stop()
	if n := h.plat.renewals.Load(); n != 4 {
		t.Errorf("%d renewals, want 4 (2 for renewDhcp 1, none for it unchanged, 2 for 2)", n)
	}
	st, _ := LoadState(h.stateDir)
	if st.RenewDHCP == nil || *st.RenewDHCP != 2 || st.PendingRenewDHCP != nil {
		t.Errorf("state renewDhcp %v pending %v", st.RenewDHCP, st.PendingRenewDHCP)
	}
	checkSeq(t, h.imds.all())
}

// TestRenewDHCPListFails: a renewDhcp whose DHCP interfaces cannot be
// listed is not recorded as acted on: it stays pending, and the next start
// renews every interface and only then records it.
func TestRenewDHCPListFails(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0", "eth1"}
	h.plat.setFail(listDHCP, errors.New("netlink: no buffer space"))
	h.start()
	g1 := h.imds.publish(`{"network": {"renewDhcp": 1}}`)
	h.imds.waitReport(status.StateProvisioned, g1)
	// The renewal runs in the config loop before the next document is
	// read: once generation 2's outcome is reported, it has given up.
	g2 := h.imds.publish(`{"timezone": "UTC"}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.stop()
	if n := h.plat.renewals.Load(); n != 0 {
		t.Errorf("%d renewals while listing fails, want 0", n)
	}
	st, _ := LoadState(h.stateDir)
	if st.RenewDHCP != nil || st.PendingRenewDHCP == nil || *st.PendingRenewDHCP != 1 {
		t.Fatalf("after a failed listing: state renewDhcp %v pending %v, want none done and 1 pending", st.RenewDHCP, st.PendingRenewDHCP)
	}

	h.plat.setFail(listDHCP, nil)
	h.start()
	h.imds.waitFor("two renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 2 })
	h.stop()
	st, _ = LoadState(h.stateDir)
	if st.RenewDHCP == nil || *st.RenewDHCP != 1 || st.PendingRenewDHCP != nil {
		t.Errorf("after the restart: state renewDhcp %v pending %v, want 1 done", st.RenewDHCP, st.PendingRenewDHCP)
	}
	checkSeq(t, h.imds.all())
}
