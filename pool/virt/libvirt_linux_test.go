package virt

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"
)

// TestLibvirtLive drives a real libvirtd: networks, reservations, an
// overlay on the golden image, a domain with metadata, the claim's re-map
// (the tap moves to the tenant bridge with its link down, in one update,
// keeping its name) and the bounce, then teardown. It needs root in a
// private namespace where libvirtd runs (HARNESS.md): set
// PREWARM_POOL_LIBVIRT to its socket and PREWARM_POOL_IMAGE to a directory
// with debian-12-prewarm.qcow2, vmlinuz and initrd.img.
func TestLibvirtLive(t *testing.T) {
	sock, img := os.Getenv("PREWARM_POOL_LIBVIRT"), os.Getenv("PREWARM_POOL_IMAGE")
	if sock == "" || img == "" {
		t.Skip("set PREWARM_POOL_LIBVIRT and PREWARM_POOL_IMAGE to run against a real libvirtd (in a private namespace)")
	}
	ctx := context.Background()
	v, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	nets := []NetworkSpec{
		{Name: "lt-pool", Bridge: "ltpool0", Prefix: netip.MustParsePrefix("10.253.0.0/24")},
		{Name: "lt-tenant", Bridge: "lttnt0", Prefix: netip.MustParsePrefix("10.253.1.0/24")},
	}
	for _, n := range nets {
		if err := v.EnsureNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := v.EnsureNetwork(ctx, n); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	bad := nets[0]
	bad.Bridge = "ltother0"
	if err := v.EnsureNetwork(ctx, bad); err == nil || !strings.Contains(err.Error(), "another bridge") {
		t.Errorf("a network of the same name with another bridge: err = %v", err)
	}
	dir := t.TempDir()
	// QEMU runs as another user: it must reach the overlay.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	pool := "lt-overlays-" + filepath.Base(filepath.Dir(dir))
	if err := v.EnsureStoragePool(ctx, pool, dir); err != nil {
		t.Fatal(err)
	}
	const name, mac, tap = "pw-live-000001", "52:54:00:fe:00:01", "pwtfe000001"
	disk, err := v.CreateOverlay(ctx, pool, name+".qcow2", filepath.Join(img, "debian-12-prewarm.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.DeleteOverlay(ctx, pool, name+".qcow2")
	start := time.Now()
	if err := v.AddDHCPHost(ctx, "lt-pool", mac, "10.253.0.2", name); err != nil {
		t.Fatal(err)
	}
	t.Logf("reservation (network update, live and persistent) took %v", time.Since(start))
	defer v.RemoveDHCPHost(ctx, "lt-pool", mac)
	if _, err := v.Leases(ctx, "lt-pool"); err != nil {
		t.Fatalf("leases: %v", err)
	}
	hosts, err := v.DHCPHosts(ctx, "lt-pool")
	if err != nil || len(hosts) != 1 || hosts[0].IP != "10.253.0.2" {
		t.Fatalf("reservations = %+v, %v", hosts, err)
	}
	meta := Meta{Flavor: "live", State: StateBooting, Path: "warm", MAC: mac, Tap: tap, PoolNetwork: "lt-pool", PoolIP: "10.253.0.2", Generation: 1}
	x, err := DomainXML(DomainSpec{Name: name, Type: "qemu", VCPUs: 1, MemoryMiB: 256, Machine: "q35",
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initrd.img"), Cmdline: "console=ttyS0 quiet",
		Disk: disk, NIC: NIC{MAC: mac, Tap: tap, Network: "lt-pool", Up: true}, ConsoleLog: filepath.Join(dir, name+".log"), Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := v.DefineAndStart(ctx, x); err != nil {
		t.Fatal(err)
	}
	t.Logf("define and start took %v", time.Since(start))
	defer v.Destroy(ctx, name)
	// The bridge the tap is enslaved to (ip, not /sys: sysfs may show
	// another network namespace than this one).
	master := func() string {
		out, err := exec.Command("ip", "-o", "link", "show", "dev", tap).Output()
		if err != nil {
			t.Fatalf("ip link show %s: %v", tap, err)
		}
		f := strings.Fields(string(out))
		for i := range f[:len(f)-1] {
			if f[i] == "master" {
				return f[i+1]
			}
		}
		return ""
	}
	if m := master(); m != "ltpool0" {
		t.Errorf("tap %s is on %q, want ltpool0", tap, m)
	}
	meta.State = StateWarm
	start = time.Now()
	if err := v.SetMeta(ctx, name, meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("metadata write (live and persistent) took %v", time.Since(start))
	doms, err := v.Domains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range doms {
		if d.Name == name {
			found = true
			if !d.Running || d.Meta.State != StateWarm || d.Meta.PoolIP != "10.253.0.2" {
				t.Errorf("domain = %+v", d)
			}
		}
	}
	if !found {
		t.Fatalf("domain %s not listed among %+v", name, doms)
	}
	if err := v.Suspend(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := v.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	// The re-map: tenant network and link down in one update.
	start = time.Now()
	if err := v.UpdateInterface(ctx, name, NIC{MAC: mac, Tap: tap, Network: "lt-tenant", Up: false}); err != nil {
		t.Fatal(err)
	}
	t.Logf("re-map (network + link down) took %v", time.Since(start))
	if m := master(); m != "lttnt0" {
		t.Errorf("after the re-map the tap is on %q, want lttnt0", m)
	}
	check := func(wantLink string) {
		t.Helper()
		l, err := v.conn()
		if err != nil {
			t.Fatal(err)
		}
		dom, err := l.DomainLookupByName(name)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := l.DomainGetXMLDesc(dom, 0)
		if err != nil {
			t.Fatal(err)
		}
		var d libvirtxml.Domain
		if err := d.Unmarshal(desc); err != nil {
			t.Fatal(err)
		}
		in := d.Devices.Interfaces[0]
		if in.Source.Network.Network != "lt-tenant" || in.Link == nil || in.Link.State != wantLink || in.Target.Dev != tap {
			t.Errorf("live interface: network %q link %+v target %+v; want lt-tenant, %s, %s", in.Source.Network.Network, in.Link, in.Target, wantLink, tap)
		}
	}
	check("down")
	start = time.Now()
	if err := v.UpdateInterface(ctx, name, NIC{MAC: mac, Tap: tap, Network: "lt-tenant", Up: true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("bounce (link up) took %v", time.Since(start))
	check("up")
	// Lifecycle events: the destroy below is reported as a stop.
	ectx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	stops, err := v.DomainStops(ectx)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-stops:
		if got != name {
			t.Errorf("stop event for %q, want %q", got, name)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("no lifecycle stop event for %s within 30 s of its destroy", name)
	}
	stopEvents()
	if err := v.Destroy(ctx, name); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	if err := v.Suspend(ctx, name); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "domain "+name) {
		t.Errorf("suspend of a destroyed domain: err = %v, want ErrNotFound naming it", err)
	}
	if _, err := v.Leases(ctx, "lt-absent"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "network lt-absent") {
		t.Errorf("leases of an absent network: err = %v, want ErrNotFound naming it", err)
	}
	if _, err := v.Overlays(ctx, "lt-absent"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "storage pool lt-absent") {
		t.Errorf("overlays of an absent storage pool: err = %v, want ErrNotFound naming it", err)
	}
	if err := v.DeleteOverlay(ctx, pool, name+".qcow2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(disk); !os.IsNotExist(err) {
		t.Errorf("overlay %s still there: %v", disk, err)
	}
}
