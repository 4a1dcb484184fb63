package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// ConsoleClock stamps each line of the VM's serial console with the host
// time it arrived: the agent in the VM logs there, so the host can place
// the agent's steps (link event seen, lease renewed, IMDS reached, document
// received, outcome made) on its own clock without trusting the guest's.
type ConsoleClock struct {
	vl *VMLab
	mu sync.Mutex
	at map[int]time.Time
}

// FollowConsole starts stamping the console's lines (those already there
// count as arriving now) until ctx ends.
func (vl *VMLab) FollowConsole(ctx context.Context) *ConsoleClock {
	c := &ConsoleClock{vl: vl, at: map[int]time.Time{}}
	go func() {
		next := 0
		for ctx.Err() == nil {
			_, i, err := vl.VM.QEMU.Log.WaitFunc(ctx, next, func(string) bool { return true })
			if err != nil {
				return
			}
			now := time.Now()
			c.mu.Lock()
			for j := next; j <= i; j++ {
				c.at[j] = now
			}
			c.mu.Unlock()
			next = i + 1
		}
	}()
	return c
}

// Find returns the arrival time and index of the first console line from
// index from on that contains every one of subs.
func (c *ConsoleClock) Find(from int, subs ...string) (time.Time, int, bool) {
	lines := c.vl.VM.QEMU.Log.Lines()
	for i := from; i < len(lines); i++ {
		ok := true
		for _, s := range subs {
			if !strings.Contains(lines[i], s) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		c.mu.Lock()
		t, stamped := c.at[i]
		c.mu.Unlock()
		return t, i, stamped
	}
	return time.Time{}, -1, false
}

// ClaimOrder is how a claim's publish and NIC bounce are ordered.
type ClaimOrder int

const (
	PublishFirst ClaimOrder = iota // publish, then bounce at once
	BounceFirst                    // bounce, then publish at once
	Together                       // both started at the same instant
)

func (o ClaimOrder) String() string {
	return [...]string{"publish first", "bounce first", "together"}[o]
}

// ClaimMarks are the phases of a claim, each as the time since the claim
// began (0: not seen in the console), in the order the agent usually goes
// through them.
var ClaimMarks = []string{"bounce seen", "renewal done", "IMDS reconnected", "doc fetched", "applied", "report stored"}

// ClaimResult is one claim: the final document published while the NIC
// bounces, until the host has the provisioned report.
type ClaimResult struct {
	Order ClaimOrder
	Gen   int64
	Total time.Duration // claim start → provisioned stored on the IMDS, seen by the host
	Marks map[string]time.Duration
	// Renewals and Provisioned count the dhcp-renewed reports and the
	// provisioned reports of Gen from the claim until a quiet period
	// after it; RenewedBefore says the renewal's report came before the
	// provisioned one.
	Renewals, Provisioned int
	RenewedBefore         bool
	// BounceSeen says the guest's kernel had counted the bounce's carrier
	// change when the agent last checked its links before the outcome
	// (its "links checked" debug line, whose eth0 counter differs from
	// the agent's last check before the claim: any carrier change since
	// then counts, the safe direction), so the agent had to renew before
	// reporting provisioned. False when the outcome was decided before
	// the bounce reached the guest (publish and bounce at once: the
	// document can arrive and be applied before QEMU's set_link does):
	// then the renewal rightly comes after. True when the evidence is
	// missing or reads a zero counter (a watcher that lost the counter
	// would otherwise make every claim look "not seen").
	BounceSeen bool
	Evidence   string // the "links checked" lines compared, for the log
	Reports    []Arrival
}

// Claim claims the VM: the reservation of eth0 moves to addr, then the
// final document doc is published and eth0 bounced (bounce: the host's
// NIC bounce, e.g. set_link off, a hold, on) in the given order. It waits
// for the provisioned report, then for quiet (1.5 s without a report, so
// a second renewal or outcome would be seen, and the next claim's bounce
// meets a quiet link) and returns what happened.
func (vl *VMLab) Claim(t testing.TB, ctx context.Context, rep *Reports, clk *ConsoleClock, order ClaimOrder, addr, gw netip.Addr, doc Doc, bounce func() error) ClaimResult {
	t.Helper()
	n := vl.NIC0
	vl.Tracef("claim (%s): reserve %s", order, addr)
	if err := n.Reserve(ctx, addr, gw); err != nil {
		t.Fatal(err)
	}
	vl.Tracef("claim: reserved")
	from := vl.VM.QEMU.Log.Len()
	repFrom := len(rep.All())
	var gen int64
	var berr error
	t0 := time.Now()
	switch order {
	case PublishFirst:
		gen = vl.Publish(ctx, n.ID, doc)
		berr = bounce()
	case BounceFirst:
		berr = bounce()
		gen = vl.Publish(ctx, n.ID, doc)
	case Together:
		start := make(chan struct{})
		done := make(chan error, 1)
		go func() { <-start; done <- bounce() }()
		close(start)
		gen = vl.Publish(ctx, n.ID, doc)
		berr = <-done
	}
	if berr != nil {
		t.Fatalf("bounce: %v", berr)
	}
	vl.Tracef("claim: published generation %d, bounced", gen)
	prov, err := rep.WaitFor(ctx, "provisioned", State(status.StateProvisioned, gen))
	if err != nil {
		t.Fatal(err)
	}
	res := ClaimResult{Order: order, Gen: gen, Total: prov.At.Sub(t0), Marks: map[string]time.Duration{}}
	found := func() bool {
		for _, a := range rep.All()[repFrom:] {
			if Renewed(addr.String())(a.Report) {
				return true
			}
		}
		return false
	}
	if !found() {
		// The bounce may have come after the outcome was made (publish
		// first): its renewal follows. A guest that never saw the bounce
		// (on and off again before it looked) renews nothing: counted,
		// not waited for.
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := rep.WaitFor(wctx, "dhcp-renewed with "+addr.String(), Renewed(addr.String()))
		wcancel()
		if err != nil {
			t.Logf("claim of generation %d: no renewal with %s: %v", gen, addr, err)
		}
	}
	rep.Settle(ctx, 1500*time.Millisecond, 15*time.Second)
	res.Reports = rep.All()[repFrom:]
	for _, a := range res.Reports {
		vl.Tracef("claim report (arrived %s): %s", a.At.Format("15:04:05.000"), a)
	}
	var renewSeq uint64
	for _, a := range res.Reports {
		if a.Event == status.EventDHCPRenewed {
			res.Renewals++
			if renewSeq == 0 {
				renewSeq = a.Seq
			}
		}
		if State(status.StateProvisioned, gen)(a.Report) {
			res.Provisioned++
		}
	}
	res.RenewedBefore = renewSeq != 0 && renewSeq < prov.Seq
	res.BounceSeen, res.Evidence = bounceSeenAtOutcome(vl.VM.QEMU.Log.Lines(), from, gen)
	if res.Renewals != 1 {
		// What the agent saw around the claim, for the record.
		lines := vl.VM.QEMU.Log.Lines()
		for _, line := range lines[max(0, from-30):] {
			for _, m := range []string{`msg="link event"`, `msg="DHCP renewed"`, "outcome waits", `msg="config received"`, "event=dhcp-renewed"} {
				if strings.Contains(line, m) {
					t.Logf("  console: %s", line)
					break
				}
			}
		}
	}
	g := fmt.Sprintf("generation=%d", gen)
	mark := func(name string, after int, subs ...string) int {
		at, i, ok := clk.Find(after, subs...)
		if ok {
			res.Marks[name] = at.Sub(t0)
		}
		return i
	}
	mark("bounce seen", from, `msg="link event"`, "interface=eth0")
	if i := mark("renewal done", from, `msg="DHCP renewed"`); i >= 0 {
		// The first answer after that renewal (the line names the last
		// renewal, so it is looked for after it).
		mark("IMDS reconnected", i, `msg="IMDS reached after a renewal"`)
	}
	mark("doc fetched", from, `msg="config received"`, g)
	mark("applied", from, "msg=report", "state=provisioned", g, `event=""`)
	res.Marks["report stored"] = res.Total
	return res
}

// Bounce is a plain NIC bounce of eth0: link off, hold, link on.
func (vl *VMLab) Bounce(hold time.Duration) func() error {
	return func() error {
		vl.Tracef("set_link n0 off")
		if _, err := vl.VM.Monitor.SetLink("n0", false); err != nil {
			return err
		}
		vl.Tracef("set_link n0 off done")
		if tracing() {
			vl.traceLinks()
		}
		time.Sleep(hold) // the bounce's length: the stimulus, not a wait for a result
		_, err := vl.VM.Monitor.SetLink("n0", true)
		vl.Tracef("set_link n0 on done")
		if tracing() {
			vl.traceLinks()
		}
		return err
	}
}

// traceLinks records QEMU's view of the NICs (info network: a NIC whose
// link is set off says "link=down") and the host's of tap1.
func (vl *VMLab) traceLinks() {
	out, err := vl.VM.Monitor.Cmd("info network")
	if i := strings.LastIndex(out, "\x1b[K"); i >= 0 {
		out = out[i+len("\x1b[K"):] // the monitor's echo of the command
	}
	vl.Tracef("info network: %s %v", strings.Join(strings.Fields(out), " "), err)
	tap, err := run(context.Background(), "ip", "-n", vl.HostNS.Name, "-o", "link", "show", vl.NIC0.HostIf)
	vl.Tracef("host %s: %s %v", vl.NIC0.HostIf, strings.Join(strings.Fields(tap), " "), err)
}

// quantiles formats p50 and p90 (and the max) of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("p50 %s  p90 %s  max %s ms (n=%d)", ms(q(0.5)), ms(q(0.9)), ms(s[len(s)-1]), len(s))
}

// bounceSeenAtOutcome reads the agent's console (run with --log-level
// debug) for the last "links checked" line before its provisioned report
// of gen and the last one before the claim (line from): the bounce was
// seen when eth0's carrier counter had moved between them. Missing
// evidence counts as seen, so the strict assertion applies.
func bounceSeenAtOutcome(lines []string, from int, gen int64) (bool, string) {
	changes := func(line string) (string, bool) {
		i := strings.Index(line, "eth0:changes=")
		if i < 0 {
			return "", false
		}
		f := strings.FieldsFunc(line[i+len("eth0:changes="):], func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == '"' })
		if len(f) == 0 {
			return "", false
		}
		return f[0], true
	}
	var before, at string
	for _, line := range lines[:min(from, len(lines))] {
		if strings.Contains(line, `msg="links checked"`) {
			if c, ok := changes(line); ok {
				before = c
			}
		}
	}
	outcome := fmt.Sprintf(`state=provisioned generation=%d event=""`, gen)
	for _, line := range lines[min(from, len(lines)):] {
		if strings.Contains(line, "msg=report") && strings.Contains(line, outcome) {
			break
		}
		if strings.Contains(line, `msg="links checked"`) {
			if c, ok := changes(line); ok {
				at = c
			}
		}
	}
	ev := fmt.Sprintf("eth0 carrier changes %q before the claim, %q at the outcome", before, at)
	if before == "" || at == "" || before == "0" || at == "0" {
		return true, ev + " (missing or zero: counted as seen)"
	}
	return at != before, ev
}
