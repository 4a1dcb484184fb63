package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

// countRenewed counts the dhcp-renewed reports of iface.
func countRenewed(rs []status.Report, iface string) int {
	n := 0
	for _, r := range renewReports(rs) {
		if r.Interface == iface {
			n++
		}
	}
	return n
}

// settle returns once every renewal that link events started has
// finished: the outcome of a new generation waits for them (see
// TestOutcomeAfterRenewal), so once it is reported they are done.
func settle(h *harness) {
	h.t.Helper()
	h.plat.syncLinks(h.t)
	h.imds.waitReport(status.StateProvisioned, h.imds.publish(`{"hostname": "settled"}`))
}

// TestFlapStormCoalesced: a carrier that comes back is renewed at once;
// 50 more flaps of eth0 while that renewal runs are coalesced into exactly
// one more renewal after it; the renewal is reported as a dhcp-renewed
// event with the new addresses, and the agent re-establishes its IMDS
// connection at once (the parked poll is cut and redialled).
func TestFlapStormCoalesced(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	hold := h.plat.holdRenewals()
	// Wait for the agent to park its long-poll for the next generation.
	h.imds.waitFor("parked poll", func(_ []status.Report, reqs []request) bool { return len(configGets(reqs)) >= 1 })
	getsBefore := len(configGets(h.imds.reqs()))

	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 2}
	if s := <-h.plat.entered; s != renewStep {
		t.Fatalf("entered %q, want the renewal", s)
	}
	for i := range 50 {
		h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: uint32(3 + 2*i)}
		h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: uint32(4 + 2*i)}
	}
	h.plat.syncLinks(t)
	close(hold)
	h.imds.waitFor("two dhcp-renewed", func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") >= 2 })
	r := renewReports(h.imds.all())[0]
	if r.Interface != "eth0" || len(r.Addresses) != 1 || r.Addresses[0] != "10.0.0.5/24" || r.State != status.StateProvisioned || r.Generation != g {
		t.Errorf("dhcp-renewed report %+v", r)
	}
	// The reconnect: a new config request after the renewal, long before
	// the 5 s long-poll timeout would have produced one.
	h.imds.waitFor("re-established poll", func(_ []status.Report, reqs []request) bool {
		return len(configGets(reqs)) > getsBefore
	})
	settle(h)
	if n := countRenewed(h.imds.all(), "eth0"); n != 2 {
		t.Errorf("%d renewals of eth0 for a bounce and 50 flaps during its renewal, want 2 (the one, and one coalesced)", n)
	}
	if n := h.plat.renewals.Load(); n != 2 {
		t.Errorf("%d renewals in all, want 2", n)
	}

	// The storm goes on during the extra renewal: it adds nothing. A
	// flap after it ended is renewed anew.
	hold = h.plat.holdRenewals()
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 200}
	<-h.plat.entered
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 202}
	h.plat.syncLinks(t)
	hold2 := make(chan struct{})
	h.plat.mu.Lock()
	h.plat.block[renewStep] = hold2
	h.plat.mu.Unlock()
	close(hold)
	<-h.plat.entered // the extra renewal
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 204}
	h.plat.syncLinks(t)
	close(hold2)
	settle(h)
	if n := h.plat.renewals.Load(); n != 4 {
		t.Errorf("%d renewals in all, want 4 (a flap during the extra renewal adds none)", n)
	}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 206}
	settle(h)
	if n := h.plat.renewals.Load(); n != 5 {
		t.Errorf("%d renewals in all, want 5 (a flap after the extra renewal is renewed)", n)
	}
	checkSeq(t, h.imds.all())
}

// TestBackToBackBounces: bounces that follow one another, each after the
// last renewal finished, are each renewed at once: no debounce holds the
// second back. A repeat of the state a running renewal answers (the same
// carrier-change count) adds no renewal.
func TestBackToBackBounces(t *testing.T) {
	h := newHarness(t)
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	for i := 1; i <= 3; i++ {
		h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: uint32(2*i + 1)}
		h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: uint32(2*i + 2)}
		h.imds.waitFor(fmt.Sprintf("renewal %d", i), func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") == i })
	}
	hold := h.plat.holdRenewals()
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 10}
	<-h.plat.entered
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 10}
	h.plat.syncLinks(t)
	close(hold)
	settle(h)
	if n := countRenewed(h.imds.all(), "eth0"); n != 4 {
		t.Errorf("%d renewals of eth0, want 4 (three bounces, then one state seen twice)", n)
	}
	checkSeq(t, h.imds.all())
}

// TestOutcomeAfterRenewal: a claim's document and its NIC bounce arrive
// together: the carrier comes back while the steps run. The outcome
// (provisioned) is reported only after the renewal the bounce caused has
// finished, once, and the renewal happens once.
func TestOutcomeAfterRenewal(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	step := make(chan struct{})
	h.plat.block[status.StepTimezone] = step
	h.plat.entered = make(chan string, 16)
	g := h.imds.publish(finalDoc)
	for s := range h.plat.entered {
		if s == status.StepTimezone {
			break
		}
	}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 2}
	h.plat.syncLinks(t)
	close(step)
	h.imds.waitReport(status.StateProvisioned, g)
	h.imds.waitFor("dhcp-renewed", func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") == 1 })
	rs := h.imds.all()
	var renewed, provisioned uint64
	for _, r := range rs {
		if r.Event == status.EventDHCPRenewed {
			renewed = r.Seq
		}
		if r.State == status.StateProvisioned && r.Event == "" {
			provisioned = r.Seq
		}
	}
	if renewed > provisioned {
		t.Errorf("provisioned (seq %d) reported before the bounce's renewal finished (seq %d): %s", provisioned, renewed, summarize(rs))
	}
	if n := count(rs, status.StateProvisioned, g); n != 1 {
		t.Errorf("%d provisioned reports: %s", n, summarize(rs))
	}
	if n := h.plat.renewals.Load(); n != 1 {
		t.Errorf("%d renewals, want 1", n)
	}
	checkSeq(t, rs)
}

// TestOutcomeWaitsForUnreportedBounce: the claim's bounce has begun (the
// platform reads a carrier change) but its link event is still to come
// (Linux rate-limits link notices) when the steps are done: the outcome
// waits for the event and the renewal it starts.
func TestOutcomeWaitsForUnreportedBounce(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	h.plat.behind.Store(true)
	g := h.imds.publish(finalDoc)
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(h.logs.String(), "outcome waits for a link that is down or a link change not yet reported") {
		if time.Now().After(deadline) {
			t.Fatalf("the outcome did not wait for the link change: %s", h.imds.summary())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.plat.behind.Store(false)
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 4}
	p := h.imds.waitReport(status.StateProvisioned, g)
	rs := h.imds.all()
	renewed := lastRenewalSeq(rs)
	if renewed == 0 || renewed > p.Seq {
		t.Errorf("provisioned (seq %d) not after the bounce's renewal (seq %d): %s", p.Seq, renewed, summarize(rs))
	}
	checkSeq(t, rs)
}

// TestOutcomeWaitsForLinkDown: the claim's bounce took the carrier away
// (its DOWN was reported) while the steps ran: the outcome waits for the
// carrier to come back and for the renewal that starts; a link that stays
// down holds an outcome back only for a bounded while (an unplugged NIC
// is not a bounce).
func TestOutcomeWaitsForLinkDown(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: 3}
	h.plat.syncLinks(t)
	g := h.imds.publish(finalDoc)
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(h.logs.String(), "outcome waits for a link that is down") {
		if time.Now().After(deadline) {
			t.Fatalf("the outcome did not wait for the link: %s", h.imds.summary())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 4}
	p := h.imds.waitReport(status.StateProvisioned, g)
	rs := h.imds.all()
	if n := countRenewed(rs, "eth0"); n != 1 || renewReports(rs)[0].Seq > p.Seq {
		t.Errorf("want one renewal before provisioned (seq %d): %s", p.Seq, summarize(rs))
	}

	// Unplugged for good: the next outcome still comes.
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth0", CarrierChanges: 5}
	h.plat.syncLinks(t)
	g2 := h.imds.publish(`{"hostname": "unplugged"}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	if !strings.Contains(h.logs.String(), "a link stayed down") {
		t.Errorf("the outcome came without the warning that a link stayed down")
	}
	checkSeq(t, h.imds.all())
}

// TestReportCutByLinkEvent: the report in flight when the link goes down
// hangs (its connection is dead: the IMDS never answers it). The link
// event cuts it and the agent sends it again at once on a new connection:
// the report reaches the IMDS exactly once, in order, and the first try
// ended because of the link event, not by running into a timeout.
func TestReportCutByLinkEvent(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	var held atomic.Int32
	heldIn := make(chan struct{}, 1)
	cutSeen := make(chan error, 1)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || held.Add(1) != 1 {
			return false
		}
		heldIn <- struct{}{}
		<-r.Context().Done() // a dead connection: no answer, ever
		cutSeen <- r.Context().Err()
		return true
	})
	g := h.imds.publish(finalDoc)
	<-heldIn
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 2}
	h.imds.waitReport(status.StateProvisioned, g)
	h.imds.waitFor("dhcp-renewed", func(rs []status.Report, _ []request) bool { return countRenewed(rs, "eth0") == 1 })
	<-cutSeen
	h.stop()
	rs := h.imds.all()
	checkSeq(t, rs)
	if n := count(rs, status.StateApplying, g); n != 1 {
		t.Errorf("the held report (applying) arrived %d times: %s", n, summarize(rs))
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "status report cut by a link event") {
		t.Errorf("the report in flight was not cut by the link event")
	}
	if strings.Contains(logs, "deadline exceeded") {
		t.Errorf("a request ran into its timeout instead of being cut:\n%s", logs)
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

// TestLinkEventInHandHoldsTheOutcome: the agent calls an event's Handled
// only once an outcome decided from then on waits for the event (the
// watcher's LinksBehind stops counting the event at that call), and
// releases the outcome once the event is handled.
func TestLinkEventInHandHoldsTheOutcome(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	held := make(chan bool, 1)
	h.plat.links <- LinkEvent{Kind: CarrierLost, Interface: "eth1", CarrierChanges: 3, Handled: func() {
		a := h.agent
		a.linkMu.Lock()
		idle := a.idle
		a.linkMu.Unlock()
		select {
		case <-idle:
			held <- false // an outcome now would not wait
		default:
			held <- true
		}
	}}
	select {
	case ok := <-held:
		if !ok {
			t.Fatal("Handled was called while an outcome would not wait for the event")
		}
	case <-time.After(waitLimit):
		t.Fatal("the agent never called Handled")
	}
	// Once handled (eth1 down, then back), an outcome goes out.
	h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth1", CarrierChanges: 4}
	g := h.imds.publish(finalDoc)
	h.imds.waitReport(status.StateProvisioned, g)
}

// TestOutcomeRechecksAfterLinksBehind: a link event the platform hands
// over while it lists the links (it then answers "nothing behind": the
// event is no longer its own) is the agent's by then; the outcome waits
// for the renewal that event starts rather than going out before it.
func TestOutcomeRechecksAfterLinksBehind(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.imds.waitReport(status.StateWaiting, 0)
	var once sync.Once
	fn := func() {
		once.Do(func() {
			handled := make(chan struct{})
			h.plat.links <- LinkEvent{Kind: CarrierBack, Interface: "eth0", CarrierChanges: 4, Handled: func() { close(handled) }}
			select {
			case <-handled:
			case <-time.After(waitLimit):
			}
		})
	}
	h.plat.onBehind.Store(&fn)
	g := h.imds.publish(finalDoc)
	p := h.imds.waitReport(status.StateProvisioned, g)
	rs := h.imds.all()
	renewed := lastRenewalSeq(rs)
	if renewed == 0 || renewed > p.Seq {
		t.Errorf("provisioned (seq %d) not after the renewal of the event handed over during the check (seq %d): %s", p.Seq, renewed, summarize(rs))
	}
	checkSeq(t, rs)
}

// lastRenewalSeq is the seq of the last dhcp-renewed report in rs, 0 if
// there is none.
func lastRenewalSeq(rs []status.Report) uint64 {
	var seq uint64
	for _, r := range rs {
		if r.Event == status.EventDHCPRenewed {
			seq = r.Seq
		}
	}
	return seq
}
