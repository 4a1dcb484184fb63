package netmgr_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/netmgr"
)

func dial(t *testing.T, l *lab) *netmgr.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := netmgr.DialAddress(ctx, l.busAddress())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// awaitLease waits (bounded) until the manager reports a lease of want.
func awaitLease(t *testing.T, get func(context.Context) (netmgr.Lease, error), want string) netmgr.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var l netmgr.Lease
	var err error
	for ctx.Err() == nil {
		if l, err = get(ctx); err == nil && l.Address.String() == want {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no lease of %s: last %+v, %v", want, l, err)
	return l
}

// managerErr asserts that err is the manager's refusal, naming want.
func managerErr(t *testing.T, err error, manager, want string) {
	t.Helper()
	var me *netmgr.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *netmgr.Error", err, err)
	}
	if me.Manager != manager || !strings.Contains(me.Message, want) || me.Name == "" {
		t.Fatalf("error %+v: want %s's error naming %q", me, manager, want)
	}
	t.Logf("%s refused, as expected: %v", manager, err)
}

func TestManagers(t *testing.T) {
	netlab.RequireRoot(t, "debootstrap", "systemd-nspawn", "dnsmasq", "zstd", "nsenter", "chroot", "tar")
	root := testRoot(t)

	t.Run("networkd", func(t *testing.T) {
		unit := filepath.Join(t.TempDir(), "20-eth0.network")
		if err := os.WriteFile(unit, []byte("[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		l := boot(t, root, "10.77.0.50",
			[]string{"--bind-ro=" + unit + ":/etc/systemd/network/20-eth0.network"},
			[]string{"systemd.mask=NetworkManager.service", "systemd.wants=systemd-networkd.service"})
		c := dial(t, l)
		get := func(ctx context.Context) (netmgr.Lease, error) { return c.NetworkdLease(ctx, "eth0") }
		first := awaitLease(t, get, "10.77.0.50/24")
		if first.Server.String() != "10.77.0.1" || first.Expires.IsZero() {
			t.Fatalf("first lease %+v: want server 10.77.0.1 and an expiry", first)
		}

		// A plain renewal (Link.Renew): a new ACK for the same address,
		// reported once networkd has it (a later lifetime end).
		acks := l.acks()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		start := time.Now()
		got, err := c.NetworkdRenew(ctx, "eth0", netmgr.NetworkdOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("renewal through Link.Renew: %v in %v", got.Address, time.Since(start).Round(time.Millisecond))
		if got.Address != first.Address || got.Manager != netmgr.Networkd || !got.Expires.After(first.Expires) {
			t.Fatalf("renewed lease %+v, want %v from networkd, expiring after %v", got, first.Address, first.Expires)
		}
		if l.acks() <= acks {
			t.Fatal("dnsmasq sent no DHCPACK for the renewal")
		}

		// The server moves the reservation and the host name changes:
		// Link.Reconfigure starts over (DISCOVER) with the new name, and
		// NetworkdRenew returns with the new address.
		l.reserve("10.77.0.51")
		// As the agent's hostname step does: /etc/hostname (the name
		// networkd 252 sends) and the kernel's.
		if _, err := l.inside("sh", "-c", "echo web-7 >/etc/hostname && hostname web-7"); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		again, err := c.NetworkdRenew(ctx, "eth0", netmgr.NetworkdOptions{Reconfigure: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("renewal through Link.Reconfigure: %v in %v", again.Address, time.Since(start).Round(time.Millisecond))
		if again.Address.String() != "10.77.0.51/24" {
			t.Fatalf("lease after the reconfigure %+v, want 10.77.0.51/24", again)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.51/24"}) {
			t.Fatalf("eth0 has %v after the renewal", a)
		}
		if n := l.leaseName(); n != "web-7" {
			t.Fatalf("dnsmasq's lease has host name %q, want web-7", n)
		}

		// The agent's renewer (linux/dhcp, run inside the container) finds
		// networkd owning eth0 and renews through it, with the new name.
		l.installHelper()
		l.reserve("10.77.0.52")
		if _, err := l.inside("sh", "-c", "echo web-9 >/etc/hostname && hostname web-9"); err != nil {
			t.Fatal(err)
		}
		l.agentRenewal("networkd", "10.77.0.52/24", "web-9")

		// An address networkd does not manage (as the agent's static
		// network step adds): the renewal keeps it (a Renew, not a
		// Reconfigure, which would drop it) and still gets an ACK.
		if _, err := l.inside("ip", "addr", "add", "10.77.0.200/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		acks = l.acks()
		if r := l.helper("dhcp-renew", "eth0", ""); r.Err != "" {
			t.Fatalf("linux/dhcp renewal beside a static address: %s", r.Err)
		}
		if a := l.eth0(); !slices.Contains(a, "10.77.0.200/24") || !slices.Contains(a, "10.77.0.52/24") {
			t.Fatalf("eth0 has %v after the renewal, want the static 10.77.0.200/24 kept beside 10.77.0.52/24", a)
		}
		if l.acks() <= acks {
			t.Fatal("dnsmasq sent no DHCPACK for the renewal beside a static address")
		}

		// An infinite lease: its renewal's ACK changes nothing networkd
		// describes (the address and its lifetime stay), so a Link.Renew
		// of it waited out its whole limit and failed. It is done once
		// the lease is still there after a short grace.
		l.reserve("10.77.0.53,infinite")
		ictx, icancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer icancel()
		inf, err := c.NetworkdRenew(ictx, "eth0", netmgr.NetworkdOptions{Reconfigure: true})
		if err != nil || inf.Address.String() != "10.77.0.53/24" || !inf.Expires.IsZero() {
			t.Fatalf("infinite lease after the reconfigure: %+v, %v; want 10.77.0.53/24 without an expiry", inf, err)
		}
		acks = l.acks()
		start = time.Now()
		inf, err = c.NetworkdRenew(ictx, "eth0", netmgr.NetworkdOptions{})
		if err != nil || inf.Address.String() != "10.77.0.53/24" {
			t.Fatalf("renewal of an infinite lease: %+v, %v; want 10.77.0.53/24", inf, err)
		}
		t.Logf("renewal of an infinite lease through Link.Renew: %v in %v", inf.Address, time.Since(start).Round(time.Millisecond))
		if l.acks() <= acks {
			t.Fatal("dnsmasq sent no DHCPACK for the infinite lease's renewal")
		}

		// Refusals carry networkd's error.
		_, err = c.NetworkdRenew(ctx, "lo", netmgr.NetworkdOptions{})
		managerErr(t, err, netmgr.Networkd, "not managed")
		_, err = c.NetworkdRenew(ctx, "nope0", netmgr.NetworkdOptions{})
		managerErr(t, err, netmgr.Networkd, "nope0")

		// NetworkManager is masked here: not on the bus.
		if on, err := c.Running(ctx, netmgr.NetworkManager); err != nil || on {
			t.Fatalf("NetworkManager running = %v, %v; want false", on, err)
		}
		_, err = c.NMRenew(ctx, "eth0", netmgr.NMOptions{})
		if !errors.Is(err, netmgr.ErrNotRunning) {
			t.Fatalf("NMRenew without NetworkManager: %v, want ErrNotRunning", err)
		}
	})

	t.Run("NetworkManager", func(t *testing.T) {
		l := boot(t, root, "10.77.0.60", nil, nil)
		l.installHelper()
		awaitLease(t, func(context.Context) (netmgr.Lease, error) {
			r := l.helper("nm-lease", "eth0", "")
			if r.Err != "" {
				return r.Lease, errors.New(r.Err)
			}
			return r.Lease, nil
		}, "10.77.0.60/24")
		renew := func(hostname string) netmgr.Lease {
			t.Helper()
			start := time.Now()
			r := l.helper("nm-renew", "eth0", hostname)
			if r.Err != "" {
				t.Fatal(r.Err)
			}
			t.Logf("renewal through Device.Reapply (host name %s): %v in %v (with the helper's start)", hostname, r.Lease.Address, time.Since(start).Round(time.Millisecond))
			return r.Lease
		}

		// A moved reservation and a new host name: one Reapply restarts
		// DHCP with the name; the server NAKs the old address and the
		// device keeps its activation while it leases the new one.
		l.reserve("10.77.0.61")
		got := renew("web-8")
		if got.Address.String() != "10.77.0.61/24" || got.Manager != netmgr.NetworkManager || got.Server.String() != "10.77.0.1" {
			t.Fatalf("renewed lease %+v, want 10.77.0.61/24 from NetworkManager, server 10.77.0.1", got)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.61/24"}) {
			t.Fatalf("eth0 has %v after the renewal", a)
		}
		if n := l.leaseName(); n != "web-8" {
			t.Fatalf("dnsmasq's lease has host name %q, want web-8", n)
		}

		// The same host name again: nothing to change but the timeout, and
		// still a renewal (a new ACK, a new expiry).
		acks := l.acks()
		again := renew("web-8")
		if again.Address != got.Address || l.acks() <= acks {
			t.Fatalf("second renewal %+v: want %v and a new DHCPACK", again, got.Address)
		}
		// Reapply changed the applied connection only, not the profile.
		if out, _ := l.inside("grep", "-rh", "dhcp-hostname", "/etc/NetworkManager/system-connections/", "/run/NetworkManager/system-connections/"); strings.Contains(out, "web-8") {
			t.Fatalf("the saved profile changed: %s", out)
		}

		// The agent's renewer finds NetworkManager owning eth0 and renews
		// through it, sending the kernel's host name.
		l.reserve("10.77.0.62")
		if _, err := l.inside("hostname", "web-10"); err != nil {
			t.Fatal(err)
		}
		l.agentRenewal("networkmanager", "10.77.0.62/24", "web-10")

		// Refusals carry NetworkManager's error.
		nmRefused := func(iface, want string) {
			t.Helper()
			r := l.helper("nm-renew", iface, "")
			if r.Manager == nil || r.Manager.Manager != netmgr.NetworkManager || !strings.Contains(r.Manager.Message, want) || r.Manager.Name == "" {
				t.Fatalf("renewal of %s: %+v (%v), want NetworkManager's error naming %q", iface, r.Manager, r.Err, want)
			}
			t.Logf("NetworkManager refused, as expected: %s", r.Err)
		}
		nmRefused("nope0", "device")
		if _, err := l.inside("nmcli", "device", "set", "eth0", "managed", "no"); err != nil {
			t.Fatal(err)
		}
		nmRefused("eth0", "not")
	})
}

// agentRenewal runs linux/dhcp's RenewDHCP of eth0 in the container and
// checks the client it went through, the address and dnsmasq's host name.
func (l *lab) agentRenewal(client, addr, hostname string) {
	l.t.Helper()
	start := time.Now()
	r := l.helper("dhcp-renew", "eth0", "")
	if r.Err != "" {
		l.t.Fatalf("linux/dhcp renewal: %s", r.Err)
	}
	l.t.Logf("linux/dhcp renewal through %s: %v in %v (with the helper's start)", r.Renewed.Client, r.Renewed.Addresses, time.Since(start).Round(time.Millisecond))
	if r.Renewed.Client != client || len(r.Renewed.Addresses) != 1 || r.Renewed.Addresses[0].String() != addr {
		l.t.Fatalf("linux/dhcp renewal: %+v, want %s through %s", r.Renewed, addr, client)
	}
	if n := l.leaseName(); n != hostname {
		l.t.Fatalf("dnsmasq's lease has host name %q, want %s", n, hostname)
	}
}

func TestDialNoBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := netmgr.DialAddress(ctx, "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	if !errors.Is(err, netmgr.ErrNoBus) {
		t.Fatalf("dial a missing socket: %v, want ErrNoBus", err)
	}
}
