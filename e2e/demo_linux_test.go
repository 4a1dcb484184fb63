package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// narrator prints the demo's story as it happens, with the time since the
// start.
type narrator struct {
	start time.Time
	color bool
}

func (n *narrator) say(who, format string, args ...any) {
	el := time.Since(n.start).Seconds()
	tag := fmt.Sprintf("%-6s", who)
	if n.color {
		c := map[string]string{"host": "36", "guest": "33", "agent": "32", "check": "35", "tenant": "34", "timing": "1"}[who]
		if c != "" {
			tag = "\x1b[" + c + "m" + tag + "\x1b[0m"
		}
	}
	fmt.Printf("[%6.2fs] %s %s\n", el, tag, fmt.Sprintf(format, args...))
}

func (n *narrator) title(s string) {
	if n.color {
		s = "\x1b[1m" + s + "\x1b[0m"
	}
	fmt.Printf("\n%s\n", s)
}

// TestDemo is what `make demo` (e2e/demo.sh) runs: the scenario of
// TestScenario, narrated. It runs only with PREWARM_E2E_DEMO=1.
func TestDemo(t *testing.T) {
	if os.Getenv("PREWARM_E2E_DEMO") != "1" {
		t.Skip("the narrated demo runs with PREWARM_E2E_DEMO=1 (make demo)")
	}
	// An interrupt ends the waits; the test fails and its cleanups (the
	// namespaces, every process it started) run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	fi, _ := os.Stdout.Stat()
	n := &narrator{start: time.Now(), color: fi != nil && fi.Mode()&os.ModeCharDevice != 0}
	fatal := func(err error) {
		t.Helper()
		if err != nil {
			n.say("check", "FAILED: %v", err)
			t.Fatal(err)
		}
	}

	n.title("Prewarm: a pooled VM is claimed, re-addressed and provisioned (all inside network namespaces)")
	l := NewLab(t, 1)
	g := l.Guests[0]
	n.say("host", "host namespace %s: the gateway %s and %s on %s, dnsmasq reserving %s for %s",
		l.HostNS.Name, g.GW1, IMDSAddr, g.HostIf, g.Addr1, g.MAC)
	n.say("guest", "guest %s: namespace %s (eth0 = the VM's NIC) with its own hostname, /etc, /home, /var and PIDs",
		g.ID, g.NS.Name)
	l.StartIMDS()
	n.say("host", "prewarm-imds serve --listen %s:80 --admin-socket %s", IMDSAddr, l.AdminSock)
	g.Register(ctx)
	n.say("host", "registered %s by its host interface %s (prewarm-imds register %s --host-interface %s)", g.ID, g.HostIf, g.ID, g.HostIf)
	fatal(g.StartDHCP(ctx))
	as, _ := g.Addrs(ctx)
	n.say("guest", "dhclient on eth0: %s", strings.Join(as, " "))
	ensureIdentity(t, l, g)
	rep := l.Watch(g.ID)
	rep.OnReport = func(a Arrival) {
		s := a.State
		if a.Event != "" {
			s += " / " + a.Event
		}
		extra := ""
		if len(a.Addresses) > 0 {
			extra = " " + strings.Join(a.Addresses, ",")
		}
		var steps []string
		for _, st := range a.Steps {
			mark := "ok"
			if !st.OK {
				mark = "FAILED"
			}
			if st.OK && !st.Changed {
				mark = "unchanged"
			}
			steps = append(steps, fmt.Sprintf("%s %s %dms", st.Name, mark, st.MS))
		}
		if len(steps) > 0 {
			extra += " [" + strings.Join(steps, ", ") + "]"
		}
		if a.Error != "" {
			extra += " error: " + a.Error
		}
		n.say("agent", "report #%d generation %d: %s%s", a.Seq, a.Generation, s, extra)
	}
	g.StartAgent()
	n.say("guest", "prewarm-agent run --imds-url http://%s (reports reach the host through the admin API's long-poll)", IMDSAddr)
	_, err := rep.WaitFor(ctx, "waiting", State(status.StateWaiting, 0))
	fatal(err)
	var timings [][2]string
	timing := func(name string, d time.Duration) {
		n.say("timing", "%s: %v", name, d.Round(100*time.Microsecond))
		timings = append(timings, [2]string{name, d.Round(100 * time.Microsecond).String()})
	}

	n.title("1. Pool: the host publishes a placeholder config with the partial tag")
	t0 := time.Now()
	gen := l.Publish(ctx, g.ID, partialDoc())
	n.say("host", `publish {"partial": true, "hostname": "pool-standby-1"} → generation %d`, gen)
	a, err := rep.WaitFor(ctx, "partial-ready", Settled(gen))
	fatal(err)
	timing("publish → partial-ready", a.At.Sub(t0))
	n.say("check", "hostname in the guest's UTS namespace: %s", strings.TrimSpace(g.MustExec("hostname")))

	n.title("2. Claim: the host re-maps the VM's network and bounces its link")
	fatal(g.Remap(ctx))
	n.say("host", "dnsmasq now reserves %s (new network %s, gateway %s) for %s", g.Addr2, g.Net2, g.GW2, g.MAC)
	fatal(g.LinkDown(ctx))
	up, err := g.LinkUp(ctx)
	fatal(err)
	n.say("host", "ip link set %s down; ip link set %s up", g.HostIf, g.HostIf)
	a, err = rep.WaitFor(ctx, "dhcp-renewed", Renewed(g.Addr2.String()))
	fatal(err)
	timing("link up → dhcp-renewed", a.At.Sub(up))
	r := guestHTTP(t, g, HTTPReq{URL: "http://" + IMDSAddr + "/metadata/v1/instance", Headers: map[string]string{"Metadata": "true"}})
	n.say("check", "the IMDS still knows the guest at its new address: %s", strings.TrimSpace(r.Body))

	n.title("3. The final config: hostname, timezone, two users, a static address and a route")
	k := newKeys(t)
	t0 = time.Now()
	gen = l.Publish(ctx, g.ID, finalDoc(g, k, "web-01", k.alice1, k.alice2))
	n.say("host", "publish generation %d: hostname web-01, Europe/Berlin, alice (sudo nopasswd, 2 keys, hash), bob (sudo, 1 key, plaintext password), %s on eth1 + route %s", gen, staticAddr(g), staticRoute)
	a, err = rep.WaitFor(ctx, "provisioned", Settled(gen))
	fatal(err)
	timing("publish → provisioned", a.At.Sub(t0))
	before := t.Failed()
	checkFinal(t, g, k, "web-01", k.alice1, k.alice2)
	n.say("check", "%s hostname, /etc/localtime, passwd/shadow/group, sudoers.d, authorized_keys, eth1 address and route", verdict(t, before))
	n.say("check", "id alice in the guest: %s", strings.TrimSpace(g.MustExec("id", "alice")))

	n.title("4. Reconfigure the running VM: new hostname, one of alice's keys removed")
	t0 = time.Now()
	gen = l.Publish(ctx, g.ID, finalDoc(g, k, "web-02", k.alice1))
	n.say("host", "publish generation %d", gen)
	a, err = rep.WaitFor(ctx, "provisioned", Settled(gen))
	fatal(err)
	timing("publish → provisioned (reconfigure)", a.At.Sub(t0))
	before = t.Failed()
	checkFinal(t, g, k, "web-02", k.alice1)
	n.say("check", "%s only the hostname and alice's keys changed", verdict(t, before))

	n.title("The tenant's view, inside the guest")
	out, _ := g.Exec(ctx, Bins(t).Agent, "status")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		n.say("tenant", "%s", line)
	}
	logs := readStatusLog(t, g)
	n.say("tenant", "/var/log/prewarm/status.jsonl: %d reports, seq %d..%d", len(logs), logs[0].Seq, logs[len(logs)-1].Seq)

	n.title("Timings")
	for _, tm := range timings {
		fmt.Printf("  %-40s %s\n", tm[0], tm[1])
	}
	fmt.Println("\nCleaning up: the namespaces and every process the demo started.")
}

// verdict says whether the checks since failedBefore was taken passed (they
// report with t.Errorf).
func verdict(t *testing.T, failedBefore bool) string {
	if t.Failed() && !failedBefore {
		return "FAILED (see above):"
	}
	return "ok:"
}
