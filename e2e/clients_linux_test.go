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
// and none (the agent's built-in client renews a lease dhclient got).
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
			g.MustExec("sh", "-c", "kill $(cat /run/dhclient.eth0.pid)")
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
