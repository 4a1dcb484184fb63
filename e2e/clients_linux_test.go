package e2e

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/status"
)

// TestClaimDHCPClients runs the claim (re-mapped reservation, host-side
// bounce → dhcp-renewed with the new address) with each DHCP client a
// guest may run, detected by the agent: dhclient, dhcpcd, busybox udhcpc,
// and none (the agent's built-in client renews a lease dhclient got). The
// renewal's report carries the bounce's link events: a carrier change with
// its counter, and the renewal with the client's name, the pool address it
// replaced and the new one.
func TestClaimDHCPClients(t *testing.T) {
	RequireRoot(t)
	clients := []struct {
		name  string
		tool  string
		start func(t *testing.T, ctx context.Context, g *Guest)
	}{
		{"dhclient", "dhclient", func(t *testing.T, ctx context.Context, g *Guest) {
			if err := g.StartDHCP(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"dhcpcd", "dhcpcd", func(t *testing.T, ctx context.Context, g *Guest) {
			// -w: wait for the lease, then fork.
			argv, err := g.DHCPClient(netlab.Dhcpcd).Argv()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Exec(ctx, argv...); err != nil {
				t.Fatal(err)
			}
		}},
		{"udhcpc", "busybox", func(t *testing.T, ctx context.Context, g *Guest) {
			argv, err := g.DHCPClient(netlab.Udhcpc).Argv()
			if err != nil {
				t.Fatal(err)
			}
			p := g.Start("udhcpc", argv...)
			if _, _, err := p.Log.WaitFrom(ctx, 0, netlab.LeaseLine+"eth0"); err != nil {
				t.Fatal(err)
			}
		}},
		{"builtin", "dhclient", func(t *testing.T, ctx context.Context, g *Guest) {
			// A lease, then no client: the agent's own client takes over.
			if err := g.StartDHCP(ctx); err != nil {
				t.Fatal(err)
			}
			if err := g.StopDHCP(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				t.Skipf("%s not installed: %v", c.tool, err)
			}
			l := NewLab(t, 1)
			g := l.Guests[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			tm := NewTimings(t, "claim with "+c.name+": go test -count=1 -run 'TestClaimDHCPClients/"+c.name+"' -v ./e2e/")
			l.StartIMDS()
			g.Register(ctx)
			c.start(t, ctx, g)
			if as, _ := g.Addrs(ctx); !slices.Contains(as, g.Addr1.String()+"/24") {
				t.Fatalf("%s: no pool lease: %v", c.name, as)
			}
			ensureIdentity(t, l, g)
			rep := l.Watch(g.ID)
			g.StartAgent()
			doc := partialDoc()
			if c.name == "builtin" {
				// Let the built-in client own the lease first (renewDhcp),
				// so the claim replaces a lease of its own. (Taking over
				// from another client, it leaves that client's address
				// behind until it expires.)
				doc["network"] = Doc{"renewDhcp": 1}
			}
			gen := l.Publish(ctx, g.ID, doc)
			awaitSettled(t, ctx, rep, gen, status.StatePartialReady)
			if c.name == "builtin" {
				if _, err := rep.WaitFor(ctx, "renewDhcp renewal", Renewed(g.Addr1.String())); err != nil {
					t.Fatal(err)
				}
			}
			from := g.Agent.Log.Len()
			if err := g.Remap(ctx); err != nil {
				t.Fatal(err)
			}
			if err := g.LinkDown(ctx); err != nil {
				t.Fatal(err)
			}
			up, err := g.LinkUp(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, err := rep.WaitFor(ctx, "dhcp-renewed with "+g.Addr2.String(), Renewed(g.Addr2.String()))
			if err != nil {
				t.Fatal(err)
			}
			tm.Add("link up → dhcp-renewed", a.At.Sub(up))
			b := a
			if !bounceRenewal(a.Report) {
				if b, err = rep.WaitFor(ctx, "the bounce's renewal with its link events", bounceRenewal); err != nil {
					t.Fatal(err)
				}
			}
			checkLinkEvents(t, b.Report, c.name, g.Addr1.String()+"/24", g.Addr2.String()+"/24")
			for _, line := range g.Agent.Log.Lines()[from:] {
				if strings.Contains(line, `msg="renewing DHCP lease"`) {
					t.Logf("  %s", line[strings.Index(line, "msg="):])
					if !strings.Contains(line, "client="+c.name) {
						t.Errorf("the agent renewed through another client than %s", c.name)
					}
				}
			}
			as, _ := g.Addrs(ctx)
			if slices.Contains(as, g.Addr1.String()+"/24") || !slices.Contains(as, g.Addr2.String()+"/24") {
				t.Errorf("after the claim: %v, want %s only", as, g.Addr2)
			}
			// Still itself to the IMDS, and still applying configs.
			gen = l.Publish(ctx, g.ID, Doc{"partial": true, "hostname": "pool-claimed"})
			awaitSettled(t, ctx, rep, gen, status.StatePartialReady)
		})
	}
}

// bounceRenewal matches the dhcp-renewed report of a renewal of eth0 that
// started after a carrier change of eth0: its link events hold the carrier
// change, then a renewal's start, and it ends with its own event. (A
// renewal started before the bounce, as the hostname step's, may be the
// first to report the new address.)
func bounceRenewal(r status.Report) bool {
	n := len(r.LinkEvents)
	if r.Event != status.EventDHCPRenewed || n == 0 || r.LinkEvents[n-1].Kind != status.LinkRenewed || r.LinkEvents[n-1].Interface != "eth0" {
		return false
	}
	carrier := false
	for _, e := range r.LinkEvents[:n-1] {
		switch {
		case e.Interface != "eth0":
		case (e.Kind == status.LinkCarrierLost || e.Kind == status.LinkCarrierBack) && e.CarrierChanges > 0:
			carrier = true
		case e.Kind == status.LinkRenewing && carrier:
			return true
		}
	}
	return false
}

// checkLinkEvents asserts that r, a bounceRenewal report, names client
// (on its end and on every renewal's start) and the address after, and
// that its link events show the renewal that replaced the address before
// by after.
func checkLinkEvents(t *testing.T, r status.Report, client, before, after string) {
	t.Helper()
	moved := false
	for _, e := range r.LinkEvents {
		t.Logf("  link event: %+v", e)
		if e.Kind == status.LinkRenewed && slices.Contains(e.OldAddresses, before) && slices.Contains(e.Addresses, after) {
			moved = true
		}
	}
	for _, s := range r.LinkEvents {
		if s.Kind == status.LinkRenewing && s.Client != client {
			t.Errorf("a renewal's start %+v does not name %s", s, client)
		}
	}
	e := r.LinkEvents[len(r.LinkEvents)-1]
	if e.Client != client || e.Error != "" || !slices.Contains(e.Addresses, after) {
		t.Errorf("the bounce's renewal event %+v: want one by %s to %s", e, client, after)
	}
	if !moved {
		t.Errorf("no renewal event from %s to %s among the report's link events", before, after)
	}
}
