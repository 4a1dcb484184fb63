package dhcp

// ROOT TESTS: the tests in this file need root. They build network
// namespaces (pwl-<pid>-<n>-h/g) joined by a veth pair, run dnsmasq on the
// host side and a DHCP client plus this package in the guest side (this
// test binary re-executed under `ip netns exec`), and delete it all at the
// end. They never touch the machine's own interfaces.

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/netmon"
	"github.com/prewarm/prewarm/linux/nl"
)

var clients = []struct{ name, cmd string }{
	{Dhclient, "dhclient"},
	{Dhcpcd, "dhcpcd"},
	{Udhcpc, "busybox"},
	{Builtin, ""},
}

func TestDHCPRenewalInNetns(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t)
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.cmd != "" {
				netlab.Require(t, c.cmd)
			}
			p := netlab.NewPair(t)
			d := p.StartDnsmasq(t, "10.77.0.50")
			// Option 121 (the route to the metadata service): the
			// built-in client and dhcpcd install it themselves.
			wantRoute := c.name == Builtin || c.name == Dhcpcd
			env := []string{"PWL_CLIENT=" + c.name}
			if wantRoute {
				env = append(env, "PWL_WANT_ROUTE=1")
			}
			g := p.StartGuest(t, "TestGuestDHCP", env...)
			ready := g.Expect("READY", 30*time.Second)
			if !strings.Contains(ready, "10.77.0.50/24") || !strings.Contains(ready, "client="+c.name) {
				t.Fatalf("initial lease: %s", ready)
			}
			// The host re-maps the network, then bounces the link.
			p.Reserve(t, d, "10.77.0.60")
			p.HostLink(t, "down")
			time.Sleep(30 * time.Millisecond)
			p.HostLink(t, "up")
			got := g.Expect("RENEWED", 30*time.Second)
			if !strings.Contains(got, "addrs=[10.77.0.60/24]") || !strings.Contains(got, "client="+c.name) {
				t.Fatalf("after the flap: %s; want only 10.77.0.60/24 from %s", got, c.name)
			}
			// A veth bounce within the kernel's link-event rate limit may
			// arrive as one message (carrier up, counter +2): either way
			// exactly one carrier-back must have been reported.
			if !strings.Contains(got, "back=1") {
				t.Fatalf("carrier back not reported once: %s", got)
			}
			if wantRoute && !strings.Contains(got, "imds-route=true") {
				t.Fatalf("no route to 169.254.169.254 from option 121: %s", got)
			}
			g.Wait()
		})
	}
}

// startClient starts the DHCP client (none for the built-in one) with
// private files in dir.
func startClient(t *testing.T, client, dir, iface string) {
	if client == Builtin {
		return
	}
	argv, err := netlab.DHCPClient{Kind: client, Iface: iface, Dir: dir}.Argv()
	if err != nil {
		t.Fatal(err)
	}
	if client != Udhcpc {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
		return
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap it
}

func waitAddr(t *testing.T, iface, want string) {
	c, err := nl.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		as, _ := c.Addrs(l.Index)
		for _, a := range nl.GlobalPrefixes(as) {
			if a.String() == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s on %s", want, iface)
}

// hasIMDSRoute reports whether option 121's route to 169.254.169.254 is
// installed. With PWL_WANT_ROUTE set it waits up to a second for it (a
// client adds routes after the address); the benchmarks never wait.
func hasIMDSRoute() bool {
	tries := 1
	if os.Getenv("PWL_WANT_ROUTE") != "" {
		tries = 50
	}
	c, err := nl.Dial()
	if err != nil {
		return false
	}
	defer c.Close()
	for range tries {
		rs, _ := c.Routes()
		for _, r := range rs {
			if r.Dst.String() == "169.254.169.254/32" && r.Gateway.String() == "10.77.0.1" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

type logW struct{}

func (logW) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

// TestGuestDHCP is the guest side of the tests and benchmarks above: it
// starts the client, then renews on every carrier-back (debounced by
// PWL_DEBOUNCE_MS), printing one "PWL: RENEWED" line per renewal, until
// its stdin closes.
func TestGuestDHCP(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestDHCPRenewalInNetns; runs inside a test namespace")
	}
	dir, iface, client := os.Getenv("PWL_DIR"), os.Getenv("PWL_IF"), os.Getenv("PWL_CLIENT")
	debounce := 0 * time.Millisecond
	if v := os.Getenv("PWL_DEBOUNCE_MS"); v != "" {
		var ms int
		fmt.Sscan(v, &ms)
		debounce = time.Duration(ms) * time.Millisecond
	}
	netlab.PrivateFiles(t, dir)
	defer netlab.StopDHCPClients()
	defer func() {
		if b, err := os.ReadFile(filepath.Join(dir, "dhcpcd."+iface+".log")); err == nil {
			os.Stderr.Write(b)
		}
	}()
	log := slog.New(slog.NewTextHandler(logW{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	override := ""
	if client == Builtin {
		override = Builtin
	}
	r, err := New(Options{Client: override, StateDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	startClient(t, client, dir, iface)
	if client == Builtin {
		if _, err := r.RenewDHCP(ctx, iface); err != nil {
			t.Fatal(err)
		}
	}
	waitAddr(t, iface, "10.77.0.50/24")
	ifs, err := r.DHCPInterfaces(ctx)
	if err != nil || !slices.Contains(ifs, iface) {
		t.Fatalf("DHCPInterfaces = %v, %v; want %s in it", ifs, err, iface)
	}
	// Start watching only once the kernel reports the carrier, so the
	// setup's own link-up is not taken for a flap.
	for i := 0; i < 300; i++ {
		oper, _ := os.ReadFile("/sys/class/net/" + iface + "/operstate")
		if strings.TrimSpace(string(oper)) == "up" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := netmon.New(netmon.Options{Logger: log}).WatchLinks(wctx)
	if err != nil {
		t.Fatal(err)
	}
	// The first renewal reports which client was detected.
	c, _ := nl.Dial()
	l, _ := c.LinkByName(iface)
	as, _ := c.Addrs(l.Index)
	c.Close()
	fmt.Printf("PWL: READY addrs=%v client=%s\n", nl.GlobalPrefixes(as), r.owner(iface, l.Index).Client)

	stdin := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
		}
		close(stdin)
	}()
	var timer <-chan time.Time
	renewals, backs, lost := 0, 0, 0
	renew := func() {
		start := time.Now()
		lease, err := r.RenewDHCP(ctx, iface)
		if err != nil {
			t.Errorf("renew: %v", err)
			fmt.Printf("PWL: RENEWED error=%q\n", err)
			return
		}
		ms := time.Since(start).Milliseconds()
		renewals++
		sort.Slice(lease.Addresses, func(i, j int) bool { return lease.Addresses[i].String() < lease.Addresses[j].String() })
		fmt.Printf("PWL: RENEWED n=%d addrs=%v client=%s lost=%d back=%d ms=%d imds-route=%v\n", renewals, lease.Addresses, lease.Client, lost, backs, ms, hasIMDSRoute())
	}
	for {
		select {
		case e := <-evs:
			if e.Interface != iface {
				continue
			}
			switch e.Kind {
			case agent.CarrierLost:
				lost++
			case agent.CarrierBack:
				backs++
				if debounce == 0 {
					renew()
				} else {
					timer = time.After(debounce)
				}
			}
		case <-timer:
			timer = nil
			renew()
		case <-stdin:
			fmt.Printf("PWL: DONE renewals=%d back=%d lost=%d\n", renewals, backs, lost)
			return
		}
	}
}
