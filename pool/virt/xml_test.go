package virt

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"libvirt.org/go/libvirtxml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func testSpec() DomainSpec {
	return DomainSpec{
		Name: "pw-small-0a1b2c", Type: "qemu", VCPUs: 1, MemoryMiB: 512, Machine: "q35",
		Kernel: "/var/cache/prewarm/vmlinuz", Initrd: "/var/cache/prewarm/initrd.img",
		Cmdline:    "root=/dev/vda rw console=ttyS0 quiet",
		Disk:       "/var/lib/prewarm-pool/overlays/pw-small-0a1b2c.qcow2",
		NIC:        NIC{MAC: "52:54:00:0a:1b:2c", Tap: "pwt0a1b2c3d", Network: "pool", Up: true},
		ConsoleLog: "/var/log/prewarm-pool/pw-small-0a1b2c.log",
		Meta: Meta{Flavor: "small", State: StateBooting, Path: "warm", MAC: "52:54:00:0a:1b:2c", Tap: "pwt0a1b2c3d",
			PoolNetwork: "pool", PoolIP: "10.254.0.2", Generation: 1, Created: "2026-12-03T10:00:00.000Z"},
	}
}

func TestDomainXMLGolden(t *testing.T) {
	x, err := DomainXML(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "domain.xml", x)

	// It parses back with the parts libvirt relies on.
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	nic := d.Devices.Interfaces[0]
	if nic.Target.Dev != "pwt0a1b2c3d" || nic.Source.Network.Network != "pool" || nic.Link.State != "up" {
		t.Errorf("interface = %+v", nic)
	}
	m, err := UnmarshalMeta(d.Metadata.XML)
	if err != nil {
		t.Fatal(err)
	}
	if m.Flavor != "small" || m.PoolIP != "10.254.0.2" || m.Generation != 1 {
		t.Errorf("metadata = %+v", m)
	}
}

func TestInterfaceXMLGolden(t *testing.T) {
	// The claim's re-map: the tenant network and the link down in one update.
	x, err := InterfaceString(NIC{MAC: "52:54:00:0a:1b:2c", Tap: "pwt0a1b2c3d", Network: "tenant-a", Up: false})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "interface-remap.xml", x)
}

func TestNetworkXMLGolden(t *testing.T) {
	x, err := NetworkXML(NetworkSpec{Name: "pool", Bridge: "pwpool0", Prefix: netip.MustParsePrefix("10.254.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "network.xml", x)
	var n libvirtxml.Network
	if err := n.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if n.Forward != nil {
		t.Error("a pool or tenant network must be isolated (no <forward>)")
	}
}

func TestVolumeAndPoolXMLGolden(t *testing.T) {
	v, err := VolumeXML("pw-small-0a1b2c.qcow2", "/var/cache/prewarm/debian-12.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "volume.xml", v)
	p, err := PoolXML("prewarm", "/var/lib/prewarm-pool/overlays/")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "pool.xml", p)
	h, err := DHCPHostXML("52:54:00:0a:1b:2c", "10.1.0.2", "pw-small-0a1b2c")
	if err != nil {
		t.Fatal(err)
	}
	if want := `<host mac="52:54:00:0a:1b:2c" name="pw-small-0a1b2c" ip="10.1.0.2"></host>`; h != want {
		t.Errorf("DHCPHostXML = %s, want %s", h, want)
	}
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		cidr               string
		rlo, rhi, dlo, dhi string
	}{
		{"10.254.0.0/24", "10.254.0.2", "10.254.0.127", "10.254.0.128", "10.254.0.254"},
		{"10.1.0.0/29", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.6"},
	} {
		p := netip.MustParsePrefix(tc.cidr)
		rlo, rhi := ReservedRange(p)
		dlo, dhi := DynamicRange(p)
		if rlo.String() != tc.rlo || rhi.String() != tc.rhi || dlo.String() != tc.dlo || dhi.String() != tc.dhi {
			t.Errorf("%s: reserved %s-%s dynamic %s-%s, want %s-%s %s-%s", tc.cidr, rlo, rhi, dlo, dhi, tc.rlo, tc.rhi, tc.dlo, tc.dhi)
		}
	}
}
