package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/status"
)

// TestClaimHostnameReachesDHCP (issue 18 §2): with each DHCP client a
// guest may run, the pool's placeholder name and then the claim's name
// reach dnsmasq's lease file (and so the DNS it serves) by a renewal the
// agent makes after the hostname step, with no link bounce and no
// renewDhcp, and the interface never goes down: no carrier change is
// reported.
func TestClaimHostnameReachesDHCP(t *testing.T) {
	RequireRoot(t)
	clients := []struct {
		name, tool string
		start      func(t *testing.T, ctx context.Context, g *Guest)
	}{
		// The guest's /etc is a copy of this machine's: Debian's
		// dhclient.conf sends gethostname().
		{"dhclient", "dhclient", func(t *testing.T, ctx context.Context, g *Guest) {
			if err := g.StartDHCP(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"dhcpcd", "dhcpcd", func(t *testing.T, ctx context.Context, g *Guest) {
			c := g.DHCPClient(netlab.Dhcpcd)
			c.Hostname = true // Debian's dhcpcd.conf has "hostname"
			argv, err := c.Argv()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Exec(ctx, argv...); err != nil {
				t.Fatal(err)
			}
		}},
		{"udhcpc", "busybox", func(t *testing.T, ctx context.Context, g *Guest) {
			// As ifupdown runs it: in the background once bound.
			c := g.DHCPClient(netlab.Udhcpc)
			c.Background = true
			argv, err := c.Argv()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Exec(ctx, append([]string{"sh", "-c", `exec "$@" </dev/null >/dev/null 2>&1`, "sh"}, argv...)...); err != nil {
				t.Fatal(err)
			}
		}},
		{"builtin", "dhclient", func(t *testing.T, ctx context.Context, g *Guest) {
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
			// The lab's reservations name the guest (vm-1), and a name of
			// its reservation wins over the client's in dnsmasq: these
			// reserve the address only, as a pool's DHCP with DNS from the
			// guests' own names would.
			if err := l.Dnsmasq.SetHosts(ctx, netlab.Host{MAC: g.MAC, Addr: g.Addr1.String()}); err != nil {
				t.Fatal(err)
			}
			l.StartIMDS()
			g.Register(ctx)
			c.start(t, ctx, g)
			ensureIdentity(t, l, g)
			rep := l.Watch(g.ID)
			g.StartAgent()
			doc := partialDoc()
			if c.name == "builtin" {
				doc["network"] = Doc{"renewDhcp": 1} // the built-in client takes the lease over
			}
			gen := l.Publish(ctx, g.ID, doc)
			awaitSettled(t, ctx, rep, gen, status.StatePartialReady)
			lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
			defer lcancel()
			if _, err := l.Dnsmasq.WaitLease(lctx, g.MAC, doc["hostname"].(string)); err != nil {
				t.Fatalf("the placeholder's name: %v", err)
			}
			from := g.Agent.Log.Len()
			t0 := time.Now()
			gen = l.Publish(ctx, g.ID, Doc{"hostname": "web-9.example.com"})
			awaitSettled(t, ctx, rep, gen, status.StateProvisioned)
			a, err := rep.WaitFor(ctx, "dhcp-renewed after the claim", func(r status.Report) bool {
				return Renewed(g.Addr1.String())(r) && r.Generation == gen
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Dnsmasq.WaitLease(lctx, g.MAC, "web-9"); err != nil {
				t.Fatalf("the claim's name: %v", err)
			}
			t.Logf("%s: publish → lease named web-9: %v", c.name, time.Since(t0).Round(time.Millisecond))
			// No bounce in this test: a carrier event means the renewal
			// took the interface down.
			for _, e := range a.Report.LinkEvents {
				if e.Kind == status.LinkCarrierLost || e.Kind == status.LinkCarrierBack {
					t.Errorf("the interface went down and up: %+v", e)
				}
			}
			renewed := false
			for _, line := range g.Agent.Log.Lines()[from:] {
				if strings.Contains(line, `msg="renewing DHCP lease"`) {
					renewed = true
					if !strings.Contains(line, "client="+c.name) || !strings.Contains(line, "hostname=web-9.example.com") {
						t.Errorf("renewal: %s", line)
					}
				}
			}
			if !renewed {
				t.Error("no renewal in the agent's log after the claim")
			}
		})
	}
}
