package netlab

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Pair is the platform tests' network: a host and a guest namespace
// (pwl-<pid>-<n>-h and -g) joined by a veth pair, the host end carrying
// 10.77.0.1/24 and 169.254.169.254/32.
type Pair struct {
	Host, Guest *Netns
	HostIf      string // "vh0"
	GuestIf     string // "eth0"
	GuestMAC    string
	Dir         string // scratch directory of the test
}

// NewPair makes the namespaces and the veth pair; they are deleted when
// the test ends.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequireRoot(t)
	n := seq.Add(1)
	name := fmt.Sprintf("pwl-%d-%d", os.Getpid(), n)
	p := &Pair{
		HostIf:   "vh0",
		GuestIf:  "eth0",
		GuestMAC: fmt.Sprintf("52:54:00:77:%02x:%02x", os.Getpid()&0xff, n&0xff),
		Dir:      t.TempDir(),
	}
	p.Host = NewNetns(t, name+"-h")
	p.Guest = NewNetns(t, name+"-g")
	Veth(t, p.Host, p.HostIf, p.Guest, p.GuestIf, p.GuestMAC)
	p.Host.IP(t, "addr", "add", "10.77.0.1/24", "dev", p.HostIf)
	p.Host.IP(t, "addr", "add", "169.254.169.254/32", "dev", p.HostIf)
	p.Host.IP(t, "link", "set", p.HostIf, "up")
	p.Guest.IP(t, "link", "set", p.GuestIf, "up")
	return p
}

// HostLink sets the host end "up" or "down".
func (p *Pair) HostLink(t testing.TB, state string) {
	t.Helper()
	p.Host.IP(t, "link", "set", p.HostIf, state)
}

// StartDnsmasq serves 10.77.0.100-199 on the host end, with a reservation
// of the guest's MAC to reserved, option 121's route to 169.254.169.254
// and a 2 minute lease.
func (p *Pair) StartDnsmasq(t testing.TB, reserved string) *Dnsmasq {
	t.Helper()
	return StartDnsmasq(t, p.Host, DnsmasqConfig{
		Dir:        p.Dir,
		Interfaces: []string{p.HostIf},
		Ranges:     []string{"10.77.0.100,10.77.0.199,255.255.255.0,2m"},
		Options: []string{"3,10.77.0.1", "6,10.77.0.1",
			"121,169.254.169.254/32,10.77.0.1,0.0.0.0/0,10.77.0.1"},
		Hosts: []Host{{MAC: p.GuestMAC, Addr: reserved}},
	})
}

// Reserve points the guest's reservation at addr and returns once dnsmasq
// has re-read it.
func (p *Pair) Reserve(t testing.TB, d *Dnsmasq, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.SetHosts(ctx, Host{MAC: p.GuestMAC, Addr: addr}); err != nil {
		t.Fatal(err)
	}
}

// StartGuest runs test function name of this binary in the guest namespace
// with PWL_DIR (the scratch directory), PWL_IF (the guest interface),
// PWL_MAC (its MAC) and env added.
func (p *Pair) StartGuest(t testing.TB, name string, env ...string) *Guest {
	t.Helper()
	return p.Guest.StartTest(t, name, append([]string{"PWL_DIR=" + p.Dir, "PWL_IF=" + p.GuestIf, "PWL_MAC=" + p.GuestMAC}, env...)...)
}
