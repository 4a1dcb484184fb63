package dhcp

// ROOT TESTS, like netns_linux_test.go: namespaces joined by a veth pair,
// dnsmasq on the host side, and the guest side (this test binary again,
// under `ip netns exec` and `unshare --uts`, so its host name is its own)
// running a DHCP client and this package. The machine's own host name and
// interfaces are never touched.

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/nl"
)

// TestHostnameReachesDHCP: for each client, after the guest's host name
// changes, RenewDHCP's renewal sends it: dnsmasq's lease file shows the
// new name, the address stays, and the link never went down (the carrier
// change counter and the link state are as before).
func TestHostnameReachesDHCP(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t, "dnsmasq", "unshare")
	// dhclient-bare: a dhclient whose config sends no host name; the
	// renewer restarts it with a copy of the config that does. udhcpc is
	// started without a name (netlab adds none) and restarted with one.
	cases := append(slices.Clone(clients), struct{ name, cmd string }{"dhclient-bare", "dhclient"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cmd != "" {
				netlab.Require(t, c.cmd)
			}
			p := netlab.NewPair(t)
			d := p.StartDnsmasq(t, "10.77.0.50")
			g := p.StartGuestUTS(t, "TestGuestHostname", "PWL_CLIENT="+c.name)
			if got := g.Expect("READY", 30*time.Second); !strings.Contains(got, "10.77.0.50/24") {
				t.Fatalf("first lease: %s", got)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			before := "pwl-before"
			if c.name == "dhclient-bare" || c.name == Udhcpc {
				before = "*" // dnsmasq's mark for no name
			}
			if _, err := d.WaitLease(ctx, p.GuestMAC, before); err != nil {
				t.Fatalf("before the rename: %v", err)
			}
			from := d.Log.Len()
			g.Send("rename web-7.example.com")
			g.Expect("RENAMED", 10*time.Second)
			g.Send("renew")
			got := g.Expect("RENEWED", 30*time.Second)
			if !strings.Contains(got, "addrs=[10.77.0.50/24]") || !strings.Contains(got, "client="+strings.TrimSuffix(c.name, "-bare")) {
				t.Fatalf("renewal: %s; want 10.77.0.50/24 from %s", got, c.name)
			}
			if !strings.Contains(got, "link=kept") {
				t.Fatalf("the interface went down during the renewal: %s", got)
			}
			// dnsmasq keeps the first label (the domain is not its own).
			if _, err := d.WaitLease(ctx, p.GuestMAC, "web-7"); err != nil {
				t.Fatalf("after the rename and renewal: %v", err)
			}
			// The whole name: in option 81 from the built-in client, udhcpc
			// (-F) and the bare dhclient's copy; dhclient's own config sends
			// gethostname() in option 12; dhcpcd sends the first label.
			if c.name != Dhcpcd {
				if _, _, err := d.Log.WaitFrom(ctx, from, "client provides name: web-7.example.com"); err != nil {
					t.Fatalf("no FQDN from %s: %v", c.name, err)
				}
			}
			g.Wait()
		})
	}
}

// TestBuiltinNAKStartsOver: the built-in client's renewal at T1 is a RENEW
// of the address it holds; when the server refuses it (NAK) the client
// drops that address and the routes its lease installed, and starts over
// with DISCOVER.
func TestBuiltinNAKStartsOver(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t, "dnsmasq", "unshare")
	start := func(t *testing.T) (*netlab.Pair, *netlab.Dnsmasq, *netlab.Guest) {
		p := netlab.NewPair(t)
		d := p.StartDnsmasq(t, "10.77.0.50")
		g := p.StartGuestUTS(t, "TestGuestHostname", "PWL_CLIENT="+Builtin)
		if got := g.Expect("READY", 30*time.Second); !strings.Contains(got, "10.77.0.50/24") {
			t.Fatalf("first lease: %s", got)
		}
		return p, d, g
	}
	t.Run("renewed", func(t *testing.T) {
		// Nothing changed: the RENEW is acknowledged, no DISCOVER.
		_, d, g := start(t)
		from := d.Log.Len()
		g.Send("t1")
		got := g.Expect("RENEWED", 30*time.Second)
		if !strings.Contains(got, "addrs=[10.77.0.50/24]") {
			t.Fatalf("after the RENEW: %s", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := d.Log.WaitFrom(ctx, from, "DHCPACK(vh0) 10.77.0.50"); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.Log.Lines()[from:] {
			if strings.Contains(l, "DHCPDISCOVER") || strings.Contains(l, "DHCPNAK") {
				t.Fatalf("a plain RENEW should do: %s", l)
			}
		}
		g.Wait()
	})
	t.Run("reservation", func(t *testing.T) {
		// The host re-maps the guest's address in the same subnet: dnsmasq
		// refuses the RENEW ("static lease available").
		p, d, g := start(t)
		p.Reserve(t, d, "10.77.0.60")
		from := d.Log.Len()
		g.Send("t1")
		got := g.Expect("RENEWED", 30*time.Second)
		if !strings.Contains(got, "addrs=[10.77.0.60/24]") {
			t.Fatalf("after the NAK: %s; want only 10.77.0.60/24", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := d.Log.WaitFrom(ctx, from, "DHCPNAK(vh0) 10.77.0.50"); err != nil {
			t.Fatal(err)
		}
		g.Wait()
	})
	t.Run("timer", func(t *testing.T) {
		// The renewal at T1 (4 s: option 58, which dnsmasq sends when
		// asked, and takes no value under 3) runs by itself: a RENEW; after
		// the reservation moves, its NAK, then the new address, with no
		// call from the agent.
		p := netlab.NewPair(t)
		d := netlab.StartDnsmasq(t, p.Host, netlab.DnsmasqConfig{
			Dir:        p.Dir,
			Interfaces: []string{p.HostIf},
			Ranges:     []string{"10.77.0.100,10.77.0.199,255.255.255.0,2m"},
			Options:    []string{"3,10.77.0.1", "58,4"},
			Hosts:      []netlab.Host{{MAC: p.GuestMAC, Addr: "10.77.0.50"}},
		})
		g := p.StartGuestUTS(t, "TestGuestHostname", "PWL_CLIENT="+Builtin)
		if got := g.Expect("READY", 30*time.Second); !strings.Contains(got, "10.77.0.50/24") {
			t.Fatalf("first lease: %s", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A RENEW at T1 (a REQUEST of the address held, no DISCOVER).
		from := d.Log.Len()
		if _, _, err := d.Log.WaitFrom(ctx, from, "DHCPACK(vh0) 10.77.0.50"); err != nil {
			t.Fatalf("no renewal at T1: %v", err)
		}
		for _, l := range d.Log.Lines()[from:] {
			if strings.Contains(l, "DHCPDISCOVER") {
				t.Fatalf("the renewal at T1 started with DISCOVER: %s", l)
			}
		}
		p.Reserve(t, d, "10.77.0.60")
		if _, _, err := d.Log.WaitFrom(ctx, from, "DHCPNAK(vh0) 10.77.0.50"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Log.WaitFrom(ctx, from, "DHCPACK(vh0) 10.77.0.60"); err != nil {
			t.Fatal(err)
		}
		// The guest applies the ACK right after it: bounded wait for it.
		for i := 0; ; i++ {
			g.Send("addrs")
			got := g.Expect("ADDRS", 10*time.Second)
			if strings.Contains(got, "[10.77.0.60/24]") {
				break
			}
			if i >= 100 {
				t.Fatalf("after the NAK at T1: %s; want only 10.77.0.60/24", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		g.Wait()
	})
	t.Run("subnet", func(t *testing.T) {
		// The host moves the guest to another subnet and gateway: a new
		// authoritative dnsmasq refuses the RENEW ("wrong network"); the
		// old lease's address and routes (via 10.77.0.1) must go.
		p, d, g := start(t)
		if got := routesOf(t, g); !strings.Contains(got, "0.0.0.0/0>10.77.0.1") || !strings.Contains(got, "169.254.169.254/32>10.77.0.1") {
			t.Fatalf("the first lease's routes: %s", got)
		}
		d.Stop(5 * time.Second)
		p.Host.IP(t, "addr", "add", "10.78.0.1/24", "dev", p.HostIf)
		d2 := netlab.StartDnsmasq(t, p.Host, netlab.DnsmasqConfig{
			Dir:        t.TempDir(),
			Interfaces: []string{p.HostIf},
			Ranges:     []string{"10.78.0.100,10.78.0.199,255.255.255.0,2m"},
			Options:    []string{"3,10.78.0.1", "121,169.254.169.254/32,10.78.0.1,0.0.0.0/0,10.78.0.1"},
			Hosts:      []netlab.Host{{MAC: p.GuestMAC, Addr: "10.78.0.50"}},
		})
		g.Send("t1")
		got := g.Expect("RENEWED", 30*time.Second)
		if !strings.Contains(got, "addrs=[10.78.0.50/24]") {
			t.Fatalf("after the NAK: %s; want only 10.78.0.50/24", got)
		}
		if strings.Contains(got, ">10.77.0.1") || !strings.Contains(got, "0.0.0.0/0>10.78.0.1") || !strings.Contains(got, "169.254.169.254/32>10.78.0.1") {
			t.Fatalf("routes after the NAK: %s; want those via 10.78.0.1 only", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := d2.Log.WaitFrom(ctx, 0, "DHCPNAK(vh0) 10.77.0.50"); err != nil {
			t.Fatal(err)
		}
		g.Wait()
	})
}

// routesOf asks the guest for its routes on the interface.
func routesOf(t *testing.T, g *netlab.Guest) string {
	t.Helper()
	g.Send("routes")
	return g.Expect("ROUTES", 10*time.Second)
}

// TestGuestHostname is the guest side of the two tests above: it names
// itself pwl-before, starts the client (sending the host name, udhcpc in
// the background as ifupdown runs it), prints "PWL: READY", then serves
// commands from stdin: "rename NAME", "renew" (RenewDHCP), "t1" (the
// built-in client's renewal at T1), "routes", "addrs".
func TestGuestHostname(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestHostnameReachesDHCP; runs inside a test namespace")
	}
	dir, iface, client := os.Getenv("PWL_DIR"), os.Getenv("PWL_IF"), os.Getenv("PWL_CLIENT")
	netlab.PrivateFiles(t, dir)
	defer netlab.StopDHCPClients()
	if err := netlab.SetHostname("pwl-before"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logW{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	override := ""
	if client == Builtin {
		override = Builtin
	}
	r, err := New(Options{Client: override, StateDir: dir + "/state", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/state", 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if client == Builtin {
		if _, err := r.RenewDHCP(ctx, iface); err != nil {
			t.Fatal(err)
		}
	} else {
		kind := strings.TrimSuffix(client, "-bare")
		argv, err := netlab.DHCPClient{Kind: kind, Iface: iface, Dir: dir, Hostname: kind == client, Background: true}.Argv()
		if err != nil {
			t.Fatal(err)
		}
		if client == "dhclient-bare" {
			bare := dir + "/bare-dhclient.conf"
			if err := os.WriteFile(bare, []byte("# sends no host name\nrequest subnet-mask, routers;\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			argv = append(argv[:len(argv)-1:len(argv)-1], "-cf", bare, iface)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		// A file, not a pipe: the command returns when the client goes to
		// the background, which keeps its output.
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
	}
	waitAddr(t, iface, "10.77.0.50/24")
	c, err := nl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	link, err := c.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	addrs := func() []string {
		as, _ := c.Addrs(link.Index)
		var out []string
		for _, p := range nl.GlobalPrefixes(as) {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return out
	}
	routes := func() []string {
		rs, _ := c.Routes()
		var out []string
		for _, rt := range rs {
			if rt.Index == link.Index && rt.Gateway.IsValid() {
				out = append(out, rt.Dst.String()+">"+rt.Gateway.String())
			}
		}
		slices.Sort(out)
		return out
	}
	fmt.Printf("PWL: READY addrs=%v\n", addrs())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "rename":
			if err := netlab.SetHostname(arg); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("PWL: RENAMED %s\n", arg)
		case "renew", "t1":
			before := carrierChanges(iface)
			lease, err := r.renew(ctx, iface, cmd == "t1")
			if err != nil {
				t.Errorf("renew: %v", err)
				fmt.Printf("PWL: RENEWED error=%q\n", err)
				continue
			}
			kept := "kept"
			if after := carrierChanges(iface); after != before {
				kept = fmt.Sprintf("bounced(carrier changes %s -> %s)", before, after)
			}
			fmt.Printf("PWL: RENEWED addrs=%v client=%s link=%s routes=%v\n", addrs(), lease.Client, kept, routes())
		case "routes":
			fmt.Printf("PWL: ROUTES %v\n", routes())
		case "addrs":
			fmt.Printf("PWL: ADDRS %v\n", addrs())
		}
	}
}

// carrierChanges is the interface's carrier change counter: a link that
// went down and up in between has a higher one.
func carrierChanges(iface string) string {
	n, _ := os.ReadFile("/sys/class/net/" + iface + "/carrier_changes")
	return strings.TrimSpace(string(n))
}
