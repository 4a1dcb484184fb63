package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// TestClaimReportInFlight is issue 15's stall, in a network namespace: a
// claim moves the guest to another network (its reservation re-mapped)
// and bounces its link while a status report is in flight on the old
// path, which never answers again (the host drops every status report
// from the guest's old address, as a network the VM left would). The
// link event must cut that request and send the report again on the new
// path once the lease is renewed. Functional assertions, no timing: the
// report in flight reaches the IMDS exactly once and in order (every seq
// once, none missing), the bounce is renewed exactly once, provisioned is
// reported exactly once (here the outcome is made before the bounce
// begins; TestVM covers the outcome that waits for it), and the agent's first try
// ended because of the link event, not by running into its timeout (the
// agent before issue 15 logged "send status report failed" with a
// timeout, 5 s after the bounce, and only then sent it again).
func TestClaimReportInFlight(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("e2e: iptables not installed (apt-get install iptables)")
	}
	l := NewLab(t, 1)
	g := l.Guests[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := bootGuest(t, ctx, l, g)
	gen1 := l.Publish(ctx, g.ID, partialDoc())
	awaitSettled(t, ctx, rep, gen1, status.StatePartialReady)

	// The old path goes dead for reports (the long-poll still works, so
	// the document arrives and the agent reports on it).
	rule := []string{"INPUT", "-i", g.HostIf, "-s", g.Addr1.String(), "-p", "tcp", "--dport", "80",
		"-m", "string", "--string", "POST " + api.PathStatus, "--algo", "bm", "-j", "DROP"}
	ipt := func(op string) (string, error) {
		return run(ctx, append([]string{"ip", "netns", "exec", l.HostNS.Name, "iptables", op}, rule...)...)
	}
	if out, err := ipt("-I"); err != nil {
		t.Skipf("e2e: iptables string match unavailable: %v: %s", err, out)
	}
	t.Cleanup(func() { ipt("-D") })
	if err := g.Remap(ctx); err != nil {
		t.Fatal(err)
	}
	from := g.Agent.Log.Len()
	gen2 := l.Publish(ctx, g.ID, Doc{"hostname": "vm-claimed"})
	// Event-driven: the rule has dropped a status report (applying).
	for i := 0; ; i++ {
		out, err := run(ctx, "ip", "netns", "exec", l.HostNS.Name, "iptables", "-L", "INPUT", "-v", "-x", "-n")
		if err != nil {
			t.Fatal(err)
		}
		if droppedPackets(out) > 0 {
			break
		}
		if i >= 1500 || ctx.Err() != nil {
			t.Fatalf("no status report was sent on the old path:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := g.Bounce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.WaitFor(ctx, "provisioned", State(status.StateProvisioned, gen2)); err != nil {
		t.Fatal(err)
	}
	renewed := func() bool {
		for _, a := range rep.All() {
			if Renewed(g.Addr2.String())(a.Report) {
				return true
			}
		}
		return false
	}
	if !renewed() {
		if _, err := rep.WaitFor(ctx, "dhcp-renewed with "+g.Addr2.String(), Renewed(g.Addr2.String())); err != nil {
			t.Fatal(err)
		}
	}
	rep.Quiet(ctx, 1500*time.Millisecond)

	all := rep.All()
	checkArrivalSeqs(t, all)
	var renewals, provisioned, applying int
	for _, a := range all {
		t.Logf("  report: %s", a)
		switch {
		case a.Event == status.EventDHCPRenewed && a.Generation >= gen1:
			renewals++
		case State(status.StateProvisioned, gen2)(a.Report):
			provisioned++
		case State(status.StateApplying, gen2)(a.Report):
			applying++
		}
	}
	if renewals != 1 || provisioned != 1 || applying != 1 {
		t.Errorf("after the claim: %d renewals, %d provisioned, %d applying reports; want one each", renewals, provisioned, applying)
	}
	var cut bool
	for _, line := range g.Agent.Log.Lines()[from:] {
		if strings.Contains(line, "status report cut by a link event") {
			cut = true
		}
		if strings.Contains(line, "send status report failed") && strings.Contains(line, "kind=timeout") {
			t.Errorf("the report in flight ran into its timeout instead of being cut by the link event: %s", line)
		}
	}
	if !cut {
		t.Errorf("the report in flight when the link went down was not cut by the link event")
	}
}

// droppedPackets is the packet count of the first DROP rule in an
// `iptables -L -v -x -n` listing.
func droppedPackets(listing string) int {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	return 0
}
