package netlab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDHCPClientsGetTheirReservation (ROOT TEST): on a Pair with Dnsmasq,
// each client started from DHCPClient.Argv in the guest gets the
// reservation; after SetHosts a fresh client gets the new one; and the
// namespaces are gone once the subtest's cleanup ran.
func TestDHCPClientsGetTheirReservation(t *testing.T) {
	if InGuest() {
		t.Skip("host side only")
	}
	RequireRoot(t, "dnsmasq", "nsenter")
	for _, kind := range []string{Dhclient, Dhcpcd, Udhcpc} {
		var names []string
		t.Run(kind, func(t *testing.T) {
			Require(t, DHCPClient{Kind: kind}.Tool())
			p := NewPair(t)
			names = []string{p.Host.Name, p.Guest.Name}
			d := p.StartDnsmasq(t, "10.77.0.50")
			g := p.StartGuest(t, "TestGuestDHCPClient", "NETLAB_CLIENT="+kind)
			if got := g.Expect("LEASE", 30*time.Second); !strings.Contains(got, "[10.77.0.50/24]") {
				t.Fatalf("first lease: %s, want 10.77.0.50/24 only", got)
			}
			p.Reserve(t, d, "10.77.0.60")
			g.Send("again")
			if got := g.Expect("LEASE", 30*time.Second); !strings.Contains(got, "[10.77.0.60/24]") {
				t.Fatalf("lease after SetHosts: %s, want 10.77.0.60/24 only", got)
			}
			g.Wait()
		})
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.Contains(string(out), n) {
				t.Errorf("namespace %s left after its test:\n%s", n, out)
			}
		}
	}
}

// TestGuestDHCPClient is the guest side: it starts the client, prints
// "PWL: LEASE addrs=[...]", and on "again" stops it, drops the address
// and starts it afresh.
func TestGuestDHCPClient(t *testing.T) {
	if !InGuest() {
		t.Skip("guest side of TestDHCPClientsGetTheirReservation")
	}
	dir, iface := os.Getenv("PWL_DIR"), os.Getenv("PWL_IF")
	PrivateFiles(t, dir)
	defer StopDHCPClients()
	c := DHCPClient{Kind: os.Getenv("NETLAB_CLIENT"), Iface: iface, Dir: dir}
	lease := func() {
		argv, err := c.Argv()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.WaitDelay = time.Second
		if c.Kind != Udhcpc {
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v: %s", argv, err, out)
			}
		} else {
			r, w := io.Pipe()
			cmd.Stdout, cmd.Stderr = w, os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { cmd.Wait(); w.Close() }()
			sc := bufio.NewScanner(r)
			for sc.Scan() && !strings.HasPrefix(sc.Text(), LeaseLine+iface) {
			}
			go io.Copy(io.Discard, r)
		}
		// dhcpcd -w may fork before a restarted manager has set the
		// address: wait for one, bounded.
		var as []string
		for i := 0; i < 250 && len(as) == 0; i++ {
			var err error
			if as, err = addrsHere(iface); err != nil {
				t.Fatal(err)
			}
			if len(as) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		fmt.Printf("PWL: LEASE addrs=%v\n", as)
	}
	lease()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "again" {
			continue
		}
		for _, pid := range StopDHCPClients() {
			for i := 0; i < 100 && processAlive(pid); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if out, err := exec.Command("ip", "-4", "addr", "flush", "dev", iface, "scope", "global").CombinedOutput(); err != nil {
			t.Fatalf("flush: %v: %s", err, out)
		}
		lease()
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// addrsHere lists iface's global IPv4 addresses in this process's
// namespace.
func addrsHere(iface string) ([]string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", iface, "scope", "global").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip addr: %v: %s", err, out)
	}
	as := ParseAddrs(string(out))
	slices.Sort(as)
	return as, nil
}

// TestListenAndDialInNamespaces (ROOT TEST): a listener made in the host
// namespace is reached from the guest namespace over the veth, and not
// from this process's own namespace.
func TestListenAndDialInNamespaces(t *testing.T) {
	if InGuest() {
		t.Skip("host side only")
	}
	p := NewPair(t)
	p.Guest.IP(t, "addr", "add", "10.77.0.2/24", "dev", p.GuestIf)
	ln := p.Host.Listen(t, "tcp", "10.77.0.1:0")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "from %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.Guest.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s from the guest: %v", ln.Addr(), err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if line != "from 10.77.0.2\n" {
		t.Errorf("the host saw %q, want the guest's address", line)
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("dialled %s from this process's own namespace; the listener should live in %s only", ln.Addr(), p.Host.Name)
	}
}

func TestDHCPClientArgvRejectsBadInput(t *testing.T) {
	for _, c := range []DHCPClient{
		{Kind: "pump", Iface: "eth0", Dir: t.TempDir()},
		{Kind: Dhclient, Dir: t.TempDir()},
		{Kind: Dhclient, Iface: "eth0"},
	} {
		if _, err := c.Argv(); err == nil || !strings.Contains(err.Error(), "netlab.DHCPClient") {
			t.Errorf("%+v: err %v, want one naming netlab.DHCPClient and the field", c, err)
		}
	}
}
