package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// linkKinds renders link events as kind:interface[:counter].
func linkKinds(evs []status.LinkEvent) string {
	var s []string
	for _, e := range evs {
		x := e.Kind + ":" + e.Interface
		if e.CarrierChanges != 0 {
			x += fmt.Sprintf(":%d", e.CarrierChanges)
		}
		if e.Coalesced != 0 {
			x += fmt.Sprintf("(+%d)", e.Coalesced)
		}
		s = append(s, x)
	}
	return strings.Join(s, " ")
}

// linkReports returns the event reports of link events, in order.
func linkReports(rs []status.Report) []status.Report {
	var out []status.Report
	for _, r := range rs {
		if status.ValidLinkKind(r.Event) {
			out = append(out, r)
		}
	}
	return out
}

// TestLinkEventsReported: a bounce is four link events, each a report of
// its own (one status log line each) and an entry of the ring every later
// report carries: the carrier changes with their counter, the renewal's
// start, and its end with the client, the old and new addresses and its
// duration. prewarm-agent status shows them; the ring outlives a restart.
func TestLinkEventsReported(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: 3}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 4}
	h.imds.waitFor("dhcp-renewed", func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") == 1 })

	got := h.imds.all()
	checkSeq(t, got)
	lr := linkReports(got)
	var events []string
	for _, r := range lr {
		events = append(events, r.Event)
		if r.State != status.StateProvisioned || r.Generation != g || r.Interface != "eth0" || r.Attempt != 0 {
			t.Errorf("link event report %+v: want the last outcome's state and generation, the interface, no attempt", r)
		}
	}
	if s := strings.Join(events, " "); s != "carrier-lost carrier-back dhcp-renewing dhcp-renewed" {
		t.Fatalf("link event reports %s", s)
	}
	last := lr[len(lr)-1]
	if s := linkKinds(last.LinkEvents); s != "carrier-lost:eth0:3 carrier-back:eth0:4 dhcp-renewing:eth0 dhcp-renewed:eth0" {
		t.Errorf("the renewal's report carries %s", s)
	}
	if c := last.LinkEvents[2].Client; c != "fake" {
		t.Errorf("the renewal's start names client %q, want the platform's fake", c)
	}
	done := last.LinkEvents[len(last.LinkEvents)-1]
	if done.Client != "fake" || strings.Join(done.OldAddresses, ",") != "192.168.7.5/24" || strings.Join(done.Addresses, ",") != "10.0.0.5/24" || done.MS < 0 || done.Error != "" {
		t.Errorf("finished renewal event %+v", done)
	}
	for i, r := range lr {
		if n := len(r.LinkEvents); n != i+1 {
			t.Errorf("report %s carries %d events, want %d (the ring so far)", r.Event, n, i+1)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("report %s: %v", r.Event, err)
		}
	}
	if s := states(readLog(t, h.logDir)); s != states(got) {
		t.Errorf("status log %s\nsent       %s", s, states(got))
	}

	var out bytes.Buffer
	if err := PrintStatus(&out, h.runDir, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"carrier-lost eth0 (carrier changes 3)", "carrier-back eth0 (carrier changes 4)", "dhcp-renewing eth0 via fake\n",
		"dhcp-renewed eth0 via fake: 192.168.7.5/24 -> 10.0.0.5/24"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	if l := formatLine(&last); !strings.Contains(l, "event dhcp-renewed eth0 via fake: 192.168.7.5/24 -> 10.0.0.5/24 in ") {
		t.Errorf("status --follow line %q", l)
	}
	if l := formatLine(&lr[0]); !strings.Contains(l, "event carrier-lost eth0 (carrier changes 3)") {
		t.Errorf("status --follow line %q", l)
	}
	out.Reset()
	if err := PrintStatus(&out, h.runDir, true); err != nil || !strings.Contains(out.String(), `"linkEvents":[{`) {
		t.Errorf("status --json: %v\n%s", err, out.String())
	}

	h.stop()
	h.start()
	s := h.imds.waitReport(status.StateStarting, g)
	if n := len(s.LinkEvents); n != 4 {
		t.Errorf("starting report after a restart carries %d link events, want the 4 kept", n)
	}
}

// TestLinkEventsStormMerged: carrier changes while the interface's renewal
// runs make no report each: they merge into one entry (the last state and
// counter, and how many merged); the renewal and the one coalesced after it
// report as usual.
func TestLinkEventsStormMerged(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	hold := h.plat.holdRenewals()
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 2}
	<-h.plat.entered
	for i := range 50 {
		h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: uint32(3 + 2*i)}
		h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: uint32(4 + 2*i)}
	}
	h.plat.syncLinks(t)
	close(hold)
	h.imds.waitFor("two dhcp-renewed", func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") == 2 })
	got := h.imds.all()
	checkSeq(t, got)
	var events []string
	for _, r := range linkReports(got) {
		events = append(events, r.Event)
	}
	if s := strings.Join(events, " "); s != "carrier-back dhcp-renewing dhcp-renewed dhcp-renewing dhcp-renewed" {
		t.Errorf("link event reports %s: a storm during a renewal must not report each flap", s)
	}
	last := got[len(got)-1]
	if s := linkKinds(last.LinkEvents); s != "carrier-back:eth0:2 dhcp-renewing:eth0 carrier-back:eth0:102(+100) dhcp-renewed:eth0 dhcp-renewing:eth0 dhcp-renewed:eth0" {
		t.Errorf("ring %s", s)
	}
}

// TestLinkEventRing: the ring keeps the latest MaxLinkEvents, oldest
// first.
func TestLinkEventRing(t *testing.T) {
	var s State
	at := status.Time{Time: time.Now()}
	for i := range status.MaxLinkEvents + 5 {
		s.addLinkEvent(status.LinkEvent{Time: at, Kind: status.LinkCarrierBack, Interface: "eth0", CarrierChanges: uint32(i + 1)})
	}
	if n := len(s.LinkEvents); n != status.MaxLinkEvents || s.LinkEvents[0].CarrierChanges != 6 || s.LinkEvents[n-1].CarrierChanges != 21 {
		t.Fatalf("ring %s", linkKinds(s.LinkEvents))
	}
}

// DHCPClient implements DHCPClientNamer.
func (f *fakePlatform) DHCPClient(context.Context, string) (string, error) { return "fake", nil }

// TestRenewalEventFailed: a failed renewal's event names the client the
// platform named, the addresses before it, and the error; no new ones.
func TestRenewalEventFailed(t *testing.T) {
	le := renewalEvent("eth0", time.Now(), Lease{Client: "dhcpcd", Previous: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}}, errors.New("no lease within 20s"))
	if le.Kind != status.LinkRenewed || le.Client != "dhcpcd" || le.Error != "no lease within 20s" || len(le.Addresses) != 0 || le.OldAddresses[0] != "10.0.0.5/24" {
		t.Errorf("event %+v", le)
	}
	r := status.Report{Seq: 1, Time: le.Time, State: status.StateWaiting, LinkEvents: []status.LinkEvent{le}}
	if err := r.Validate(); err != nil {
		t.Error(err)
	}
	var b strings.Builder
	WriteReport(&b, &r)
	if !strings.Contains(b.String(), "dhcp-renewed eth0 via dhcpcd: FAILED: no lease within 20s") {
		t.Errorf("status output:\n%s", b.String())
	}
}

// flap makes one bounce of eth0 (carrier lost, then back with the next
// counter) and waits until the renewal it started has ended, so each flap
// is a storm's flap slower than its renewal (nothing merges).
func flap(t *testing.T, h *harness, n uint32) {
	t.Helper()
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: 2*n + 1}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 2*n + 2}
	h.plat.syncLinks(t)
	deadline := time.Now().Add(waitLimit)
	for {
		a := h.agent
		a.linkMu.Lock()
		busy := a.busy
		a.linkMu.Unlock()
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the flap's renewal does not end")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLinkEventStormPaced: a link flapping slower than its renewal makes
// four link events a flap; past the budget they enter the ring without a
// report each (else an hour of flapping pushes the outcome report out of
// the IMDS's history of 256), and the latest is reported once the budget
// allows, carrying them. A renewal that moves the address is reported
// whatever the budget.
func TestLinkEventStormPaced(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(o *Options) { o.linkBurst, o.linkEvery, o.linkQuiet = 6, time.Hour, time.Hour }
	h.plat.sameLease.Store(true)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	const flaps = 20
	for i := range uint32(flaps) {
		flap(t, h, i)
	}
	if n := h.plat.renewals.Load(); n != flaps {
		t.Fatalf("%d renewals, want one a flap (%d)", n, flaps)
	}
	// Every report made so far is delivered before the one made now.
	h.plat.sameLease.Store(false)
	flap(t, h, flaps)
	h.imds.waitFor("the moving renewal's report", func(rs []status.Report, _ []request) bool {
		lr := linkReports(rs)
		return len(lr) > 0 && lr[len(lr)-1].Event == status.EventDHCPRenewed && len(lr[len(lr)-1].Addresses) > 0 &&
			lr[len(lr)-1].LinkEvents[len(lr[len(lr)-1].LinkEvents)-1].OldAddresses[0] == "192.168.7.5/24"
	})
	lr := linkReports(h.imds.all())
	if len(lr) != 6+1 {
		t.Errorf("%d link event reports for %d flaps, want the budget's 6 and the moving renewal's: %s", len(lr), flaps+1, summarize(lr))
	}
	last := lr[len(lr)-1]
	if s := linkKinds(last.LinkEvents[len(last.LinkEvents)-4:]); s != fmt.Sprintf("carrier-lost:eth0:%d carrier-back:eth0:%d dhcp-renewing:eth0 dhcp-renewed:eth0", 2*flaps+1, 2*flaps+2) {
		t.Errorf("the last report's ring ends %s", s)
	}
	if n := len(last.LinkEvents); n != status.MaxLinkEvents {
		t.Errorf("the last report carries %d events, want the ring's %d (the events held back are in it)", n, status.MaxLinkEvents)
	}
}

// TestLinkEventsHeldAreReported: an event held back past the budget is
// reported once the budget allows, with the ring that holds it.
func TestLinkEventsHeldAreReported(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(o *Options) { o.linkBurst, o.linkEvery = 2, 300*time.Millisecond }
	h.plat.sameLease.Store(true)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	flap(t, h, 0)
	h.imds.waitFor("the held renewal's report", func(rs []status.Report, _ []request) bool {
		lr := linkReports(rs)
		return len(lr) > 0 && lr[len(lr)-1].Event == status.EventDHCPRenewed
	})
	lr := linkReports(h.imds.all())
	if len(lr) != 3 {
		t.Errorf("link event reports %s, want the budget's 2 and the held renewal's", summarize(lr))
	}
	last := lr[len(lr)-1]
	if s := linkKinds(last.LinkEvents); s != "carrier-lost:eth0:1 carrier-back:eth0:2 dhcp-renewing:eth0 dhcp-renewed:eth0" {
		t.Errorf("the held renewal's report carries %s", s)
	}
	if last.State != status.StateProvisioned || last.Generation != g {
		t.Errorf("the held renewal's report is %s of generation %d, want the outcome's", last.State, last.Generation)
	}
}

// TestLinkEventErrorBounded: a renewal's error enters the ring redacted and
// bounded as every other error: unbounded, a long one made every later
// report (each carries the ring) larger than the IMDS takes, so each was
// refused and dropped, the next outcome too.
func TestLinkEventErrorBounded(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	h.plat.setFail(renewStep, errors.New("dhclient said: "+strings.Repeat("x", 2*status.MaxReportBytes)))
	flap(t, h, 0)
	h.plat.setFail(renewStep, nil)
	g2 := h.imds.publish(`{"timezone": "UTC"}`)
	r := h.imds.waitReport(status.StateProvisioned, g2)
	var failed *status.LinkEvent
	for i, e := range r.LinkEvents {
		if e.Kind == status.LinkRenewed && e.Error != "" {
			failed = &r.LinkEvents[i]
		}
	}
	if failed == nil || len(failed.Error) > maxErrorBytes/4 || !strings.HasPrefix(failed.Error, "dhclient said: xxx") {
		t.Fatalf("the outcome's ring %s: want the failed renewal with its error cut to %d bytes", linkKinds(r.LinkEvents), maxErrorBytes/4)
	}
}

// TestLinkEventsHeldReportedWhenQuiet: past the budget, the storm's last
// event (the renewal after the link settled) is reported once the link
// is quiet, on credit, not a budget period later; the credit is paid
// back before the next: a second storm's events wait for the budget.
func TestLinkEventsHeldReportedWhenQuiet(t *testing.T) {
	h := newHarness(t)
	h.tweak = func(o *Options) { o.linkBurst, o.linkEvery, o.linkQuiet = 2, time.Hour, 50*time.Millisecond }
	h.plat.sameLease.Store(true)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	flap(t, h, 0)
	h.imds.waitFor("the held renewal's report once the link is quiet", func(rs []status.Report, _ []request) bool {
		lr := linkReports(rs)
		return len(lr) > 0 && lr[len(lr)-1].Event == status.EventDHCPRenewed
	})
	lr := linkReports(h.imds.all())
	if len(lr) != 3 {
		t.Fatalf("link event reports %s, want the budget's 2 and the held renewal's on credit", summarize(lr))
	}
	// The credit is spent: a second flap's events are held (the budget
	// refills once an hour here), and quiet alone does not send them.
	flap(t, h, 1)
	time.Sleep(300 * time.Millisecond) // six quiet periods: long enough for a wrongly sent report to arrive
	if lr := linkReports(h.imds.all()); len(lr) != 3 {
		t.Errorf("link event reports after a second flap on spent credit %s, want still 3", summarize(lr))
	}
}
