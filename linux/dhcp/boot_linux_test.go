package dhcp

// ROOT TEST: see netns_linux_test.go (the same namespaces, veth and dnsmasq).

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/nl"
)

// TestAcquireAtStart: with the built-in client named, the first lease of a
// down interface that no client serves comes from AcquireAtStart (link
// up, DORA, address, option 121 route, a renewal scheduled); with no DHCP
// server it returns an error within its wait, and keeps trying in the
// background until a server answers.
func TestAcquireAtStart(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	netlab.RequireRoot(t)
	t.Run("lease", func(t *testing.T) {
		p := netlab.NewPair(t)
		p.StartDnsmasq(t, "10.77.0.50")
		g := p.StartGuest(t, "TestGuestAcquireAtStart", "PWL_WAIT_MS=10000", "PWL_WANT_ROUTE=1")
		got := g.Expect("STARTED", 30*time.Second)
		if !strings.Contains(got, "err=<nil>") || !strings.Contains(got, "addrs=[10.77.0.50/24]") ||
			!strings.Contains(got, "up=true") || !strings.Contains(got, "scheduled=true") || !strings.Contains(got, "imds-route=true") {
			t.Fatalf("after AcquireAtStart: %s; want no error, eth0 up with 10.77.0.50/24, the IMDS route and a renewal scheduled", got)
		}
		g.Wait()
	})
	t.Run("no server yet", func(t *testing.T) {
		p := netlab.NewPair(t)
		g := p.StartGuest(t, "TestGuestAcquireAtStart", "PWL_WAIT_MS=1500")
		got := g.Expect("STARTED", 30*time.Second)
		if strings.Contains(got, "err=<nil>") || !strings.Contains(got, "addrs=[]") {
			t.Fatalf("with no DHCP server: %s; want an error and no address", got)
		}
		p.StartDnsmasq(t, "10.77.0.51")
		got = g.Expect("LEASED", 60*time.Second)
		if !strings.Contains(got, "10.77.0.51/24") {
			t.Fatalf("background retry: %s; want 10.77.0.51/24", got)
		}
		g.Wait()
	})
	t.Run("other clients", func(t *testing.T) {
		// Detection (no client named): the image's client owns the boot
		// lease, AcquireAtStart does nothing.
		r, err := New(Options{Interfaces: []string{"pwl-none0"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AcquireAtStart(context.Background(), time.Second); err != nil || r.leased("pwl-none0") {
			t.Fatalf("AcquireAtStart with detection = %v (scheduled %v); want nil and nothing done", err, r.leased("pwl-none0"))
		}
	})
}

// TestGuestAcquireAtStart is the guest side of TestAcquireAtStart: eth0
// down, AcquireAtStart, one "PWL: STARTED" line with its outcome; if it had
// no lease, a "PWL: LEASED" line once the background retry got one.
func TestGuestAcquireAtStart(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestAcquireAtStart; runs inside a test namespace")
	}
	iface := os.Getenv("PWL_IF")
	var waitMS int
	fmt.Sscan(os.Getenv("PWL_WAIT_MS"), &waitMS)
	if out, err := exec.Command("ip", "link", "set", iface, "down").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s down: %v: %s", iface, err, out)
	}
	log := slog.New(slog.NewTextHandler(logW{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := New(Options{Client: Builtin, Interfaces: []string{iface}, StateDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends a background retry
	err = r.AcquireAtStart(ctx, time.Duration(waitMS)*time.Millisecond)
	addrs := func() (bool, string) {
		c, err := nl.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		l, err := c.LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		as, _ := c.Addrs(l.Index)
		return l.Up, fmt.Sprint(nl.GlobalPrefixes(as))
	}
	up, as := addrs()
	fmt.Printf("PWL: STARTED err=%v up=%v addrs=%s scheduled=%v imds-route=%v\n", err, up, as, r.leased(iface), err == nil && hasIMDSRoute())
	if err != nil {
		for i := 0; i < 600 && !r.leased(iface); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_, as = addrs()
		fmt.Printf("PWL: LEASED addrs=%s scheduled=%v\n", as, r.leased(iface))
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
}
