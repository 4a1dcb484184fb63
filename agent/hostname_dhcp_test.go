package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// publishingDHCP is the fake platform's DHCP whose renewals send the host
// name, as Linux's do.
type publishingDHCP struct{ *fakePlatform }

func (publishingDHCP) PublishesHostname() bool { return true }

// sendingDHCP is a publishingDHCP whose client on eth1 would not send the
// name (Linux: a dhcpcd without "hostname", a supervised udhcpc).
type sendingDHCP struct{ publishingDHCP }

func (sendingDHCP) SendsHostname(_ context.Context, iface string) bool { return iface != "eth1" }

// TestHostnameRenewalSkipsNonSender: the renewal for a new name is made
// on the interfaces whose client sends it, not on one whose client would
// send the old name anyway.
func TestHostnameRenewalSkipsNonSender(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0", "eth1"}
	h.tweak = func(o *Options) { o.Platform.DHCP = sendingDHCP{publishingDHCP{h.plat}} }
	h.start()
	g1 := h.imds.publish(`{"hostname": "web-1"}`)
	h.imds.waitReport(status.StateProvisioned, g1)
	h.imds.waitFor("eth0's renewal", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 1 })
	deadline := time.Now().Add(hostnameRenewalWait + 20*time.Second)
	for !strings.Contains(h.logs.String(), "would not send it") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never skipped eth1:\n%s", h.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.stop()
	if rr := renewReports(h.imds.all()); len(rr) != 1 || rr[0].Interface != "eth0" {
		t.Errorf("renewals %+v, want eth0's only", rr)
	}
}

// TestHostnameChangeRenewsDHCP: a hostname step that changed the name is
// followed, after the outcome, by a renewal of every DHCP interface when
// the platform's renewals send the host name; once only when the document
// also raises renewDhcp; none when the step failed, or when the platform's
// renewals do not send it.
func TestHostnameChangeRenewsDHCP(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0", "eth1"}
	h.tweak = func(o *Options) { o.Platform.DHCP = publishingDHCP{h.plat} }
	h.start()
	g1 := h.imds.publish(`{"hostname": "web-1"}`)
	h.imds.waitFor("two renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 2 })
	rr := renewReports(h.imds.all())
	if rr[0].Interface != "eth0" || rr[1].Interface != "eth1" {
		t.Errorf("renewed %s then %s", rr[0].Interface, rr[1].Interface)
	}
	if h.imds.waitReport(status.StateProvisioned, g1).Seq > rr[0].Seq {
		t.Error("renewal reported before the generation's outcome")
	}
	// With renewDhcp raised too: its renewal sends the name; no second one.
	g2 := h.imds.publish(`{"hostname": "web-2", "network": {"renewDhcp": 1}}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.imds.waitFor("four renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 4 })
	// A failed hostname step renews nothing.
	h.plat.setFail(status.StepHostname, errors.New("no"))
	g3 := h.imds.publish(`{"hostname": "web-3", "timezone": "UTC"}`)
	h.imds.waitReport(status.StateFailed, g3)
	h.plat.setFail(status.StepHostname, nil)
	// Past the time a renewal for g3 would have run: the next document's
	// renewal would cover it otherwise, and this could not fail.
	time.Sleep(hostnameRenewalWait + 2*time.Second)
	// A marker: the renewals of renewDhcp 2 come after anything g3 did.
	g4 := h.imds.publish(`{"network": {"renewDhcp": 2}}`)
	h.imds.waitReport(status.StateProvisioned, g4)
	h.imds.waitFor("six renewals", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 6 })
	h.stop()
	if n := h.plat.renewals.Load(); n != 6 {
		t.Errorf("%d renewals, want 6 (2 for the new name, 2 for renewDhcp 1 with a name, none for a failed step, 2 for renewDhcp 2)", n)
	}
	checkSeq(t, h.imds.all())
}

// TestHostnameChangeNoPublisher: a platform whose renewals do not send the
// host name (the fake, Windows) gets no renewal for a new name.
func TestHostnameChangeNoPublisher(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0"}
	h.start()
	g1 := h.imds.publish(`{"hostname": "web-1"}`)
	h.imds.waitReport(status.StateProvisioned, g1)
	// Past the time the renewal for the name would have run (a renewal
	// of the next document would cover it, so this waits it out first).
	time.Sleep(hostnameRenewalWait + 2*time.Second)
	if n := h.plat.renewals.Load(); n != 0 {
		t.Errorf("%d renewals after a new host name, want none", n)
	}
	g2 := h.imds.publish(`{"network": {"renewDhcp": 1}}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.imds.waitFor("one renewal", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 1 })
	h.stop()
	if n := h.plat.renewals.Load(); n != 1 {
		t.Errorf("%d renewals, want 1 (renewDhcp's only)", n)
	}
}

// TestHostnameRenewalCoveredByLaterRenewal: a renewal of the interface
// after the hostname step (here renewDhcp of the next document; in a
// claim, the bounce's) sent the new name: the agent's own renewal for the
// name, due hostnameRenewalWait after the outcome, is not made.
func TestHostnameRenewalCoveredByLaterRenewal(t *testing.T) {
	h := newHarness(t)
	h.plat.dhcpIfaces = []string{"eth0"}
	h.tweak = func(o *Options) { o.Platform.DHCP = publishingDHCP{h.plat} }
	h.start()
	g1 := h.imds.publish(`{"hostname": "web-1"}`)
	h.imds.waitReport(status.StateProvisioned, g1)
	g2 := h.imds.publish(`{"hostname": "web-1", "network": {"renewDhcp": 1}}`)
	h.imds.waitReport(status.StateProvisioned, g2)
	h.imds.waitFor("one renewal", func(rs []status.Report, _ []request) bool { return len(renewReports(rs)) == 1 })
	deadline := time.Now().Add(hostnameRenewalWait + 20*time.Second)
	for !strings.Contains(h.logs.String(), "a renewal after the step sent it") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never decided on its own renewal for the name:\n%s", h.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.stop()
	if n := h.plat.renewals.Load(); n != 1 {
		t.Errorf("%d renewals, want 1 (renewDhcp's, which sent the name)", n)
	}
}
