// Package virt is prewarm-pool's hypervisor side: the libvirt XML the
// controller generates (domains, networks, overlay volumes, the prewarm
// metadata element) with libvirt.org/go/libvirtxml, and a Hypervisor on
// libvirtd's RPC socket with the pure-Go github.com/digitalocean/go-libvirt.
package virt

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"path/filepath"

	"libvirt.org/go/libvirtxml"
)

// MetaNS is the namespace of the controller's element in a domain's
// <metadata>; MetaPrefix its prefix.
const (
	MetaNS     = "https://prewarm.dev/xmlns/pool/1"
	MetaPrefix = "prewarm"
	// MetadataAddr is the IMDS address guests reach through their gateway.
	MetadataAddr = "169.254.169.254"
	// BridgeMAC is the MAC of every bridge the controller makes. The
	// bridges are separate L2 segments, so sharing it is harmless, and a
	// guest moved from the pool bridge to a tenant bridge keeps a valid
	// neighbour entry for its gateway: its packets from its pool address
	// reach the host (over the transit route) before it renews DHCP.
	BridgeMAC = "52:54:00:70:77:01"
)

// VM states kept in Meta.State.
const (
	StateBooting  = "booting"
	StateWarm     = "warm"
	StateClaiming = "claiming"
	StateClaimed  = "claimed"
	StateFailed   = "failed"
)

// Meta is the controller's truth about one VM, kept in the domain's
// <metadata> so a restarted controller adopts what exists.
type Meta struct {
	XMLName xml.Name `xml:"https://prewarm.dev/xmlns/pool/1 vm"`
	Flavor  string   `xml:"flavor"`
	State   string   `xml:"state"`
	// Path is "warm" (pooled, then claimed) or "cold" (booted for a claim).
	Path string `xml:"path,omitempty"`
	MAC  string `xml:"mac"`
	Tap  string `xml:"tap"`
	// PoolNetwork/PoolIP: where the VM waits; empty for a cold VM.
	PoolNetwork string `xml:"poolNetwork,omitempty"`
	PoolIP      string `xml:"poolIp,omitempty"`
	// Generation is the partial document's generation (0 for cold).
	Generation int64 `xml:"generation"`
	// ClaimID, DocHash, TenantNetwork, TenantIP are set at claim.
	ClaimID       string `xml:"claimId,omitempty"`
	DocHash       string `xml:"docHash,omitempty"`
	TenantNetwork string `xml:"tenantNetwork,omitempty"`
	TenantIP      string `xml:"tenantIp,omitempty"`
	// Created is when the boot started (RFC 3339, UTC, ms); ClaimStarted
	// when the claim began.
	Created      string `xml:"created,omitempty"`
	ClaimStarted string `xml:"claimStarted,omitempty"`
}

// MarshalMeta renders m as the element virDomainSetMetadata takes.
func MarshalMeta(m Meta) (string, error) {
	b, err := xml.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("marshal metadata: %w", err)
	}
	return string(b), nil
}

// UnmarshalMeta parses the element virDomainGetMetadata returns (libvirt
// hands it back without its namespace) or the one in a domain's XML.
func UnmarshalMeta(s string) (Meta, error) {
	type anyNS Meta
	var m struct {
		XMLName xml.Name `xml:"vm"`
		anyNS
	}
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return Meta{}, fmt.Errorf("parse prewarm metadata: %w", err)
	}
	out := Meta(m.anyNS)
	out.XMLName = xml.Name{Space: MetaNS, Local: "vm"}
	return out, nil
}

// NIC is a VM's one network interface.
type NIC struct {
	MAC     string
	Tap     string // host-side tap name (<target dev>): never vnet*
	Network string // libvirt network name
	Up      bool   // <link state>
}

// DomainSpec is what DomainXML needs.
type DomainSpec struct {
	Name       string
	Type       string // qemu or kvm
	VCPUs      int
	MemoryMiB  int
	Machine    string
	Kernel     string
	Initrd     string
	Cmdline    string
	Disk       string // the overlay's path
	NIC        NIC
	ConsoleLog string // serial console log file
	Meta       Meta
}

// InterfaceXML is the <interface> of nic, for the domain and for
// virDomainUpdateDeviceFlags (the re-map and the link bounce).
func InterfaceXML(nic NIC) *libvirtxml.DomainInterface {
	state := "down"
	if nic.Up {
		state = "up"
	}
	return &libvirtxml.DomainInterface{
		MAC:    &libvirtxml.DomainInterfaceMAC{Address: nic.MAC},
		Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: nic.Network}},
		Target: &libvirtxml.DomainInterfaceTarget{Dev: nic.Tap},
		Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		Link:   &libvirtxml.DomainInterfaceLink{State: state},
		ROM:    &libvirtxml.DomainROM{Enabled: "no"},
	}
}

// InterfaceString renders InterfaceXML(nic).
func InterfaceString(nic NIC) (string, error) {
	return InterfaceXML(nic).Marshal()
}

// DomainXML renders a domain: direct kernel boot, a virtio disk on the
// overlay, one virtio NIC on a libvirt network with a named tap, the serial
// console logged to a file, virtio-rng, and nothing a pooled VM does not
// need (no balloon, USB, graphics).
func DomainXML(s DomainSpec) (string, error) {
	meta, err := MarshalMeta(s.Meta)
	if err != nil {
		return "", err
	}
	port := uint(0)
	d := &libvirtxml.Domain{
		Type:     s.Type,
		Name:     s.Name,
		Metadata: &libvirtxml.DomainMetadata{XML: meta},
		Memory:   &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(s.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: s.Machine, Type: "hvm"},
			Kernel:  s.Kernel,
			Initrd:  s.Initrd,
			Cmdline: s.Cmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: "unsafe", Discard: "unmap"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			// No USB controller: libvirt adds one otherwise.
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Interfaces:  []libvirtxml.DomainInterface{*InterfaceXML(s.NIC)},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
				Log:    &libvirtxml.DomainChardevLog{File: s.ConsoleLog, Append: "off"},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
			}},
			RNGs: []libvirtxml.DomainRNG{{
				Model:   "virtio",
				Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	return d.Marshal()
}

// NetworkSpec is one isolated network.
type NetworkSpec struct {
	Name   string
	Bridge string
	Prefix netip.Prefix
}

// Gateway is the bridge's address: the prefix's first host.
func (n NetworkSpec) Gateway() netip.Addr { return n.Prefix.Addr().Next() }

// NetworkXML renders an isolated network (no <forward>: libvirt routes
// nothing off the bridge) with DHCP on the bridge and option 121, so a
// guest routes 169.254.169.254 through the gateway. The DHCP range is the
// upper half of the subnet, a fallback: the controller reserves an address
// per MAC (ip-dhcp-host) in the lower half before a VM meets the network.
func NetworkXML(n NetworkSpec) (string, error) {
	gw := n.Gateway()
	lo, hi := DynamicRange(n.Prefix)
	x := &libvirtxml.Network{
		Name:   n.Name,
		Bridge: &libvirtxml.NetworkBridge{Name: n.Bridge, STP: "off", Delay: "0"},
		MAC:    &libvirtxml.NetworkMAC{Address: BridgeMAC},
		IPs: []libvirtxml.NetworkIP{{
			Address: gw.String(),
			Prefix:  uint(n.Prefix.Bits()),
			DHCP: &libvirtxml.NetworkDHCP{
				Ranges: []libvirtxml.NetworkDHCPRange{{Start: lo.String(), End: hi.String()}},
			},
		}},
		DnsmasqOptions: &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{
			{Value: fmt.Sprintf("dhcp-option=121,%s/32,%s", MetadataAddr, gw)},
			// Answer at once: dnsmasq otherwise pings an address before
			// offering it (HARNESS.md: 3 s per first lease).
			{Value: "no-ping"},
		}},
	}
	return x.Marshal()
}

// DynamicRange is the upper half of p's hosts: the fallback DHCP range.
// Reserved addresses come from the lower half (ReservedRange).
func DynamicRange(p netip.Prefix) (lo, hi netip.Addr) {
	first, last := hosts(p)
	n := hostCount(p)
	lo = first
	for range n / 2 {
		lo = lo.Next()
	}
	return lo, last
}

// ReservedRange is the addresses the controller hands out by reservation:
// after the gateway, up to the dynamic range.
func ReservedRange(p netip.Prefix) (lo, hi netip.Addr) {
	first, _ := hosts(p)
	dlo, _ := DynamicRange(p)
	return first.Next(), dlo.Prev()
}

func hosts(p netip.Prefix) (first, last netip.Addr) {
	first = p.Masked().Addr().Next()
	last = first
	for range hostCount(p) - 1 {
		last = last.Next()
	}
	return first, last
}

func hostCount(p netip.Prefix) int { return 1<<(32-p.Bits()) - 2 }

// DHCPHostXML renders the <host> of a reservation for virNetworkUpdate.
func DHCPHostXML(mac, ip, name string) (string, error) {
	h := libvirtxml.NetworkDHCPHost{MAC: mac, IP: ip, Name: name}
	b, err := xml.Marshal(h)
	return string(b), err
}

// VolumeXML renders a qcow2 overlay volume whose backing file is the
// golden image: creating it copies nothing.
func VolumeXML(name, backing string) (string, error) {
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: nil,
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   backing,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
		},
	}
	return v.Marshal()
}

// PoolXML renders the dir storage pool that holds the overlays.
func PoolXML(name, dir string) (string, error) {
	p := &libvirtxml.StoragePool{
		Type:   "dir",
		Name:   name,
		Target: &libvirtxml.StoragePoolTarget{Path: filepath.Clean(dir)},
	}
	return p.Marshal()
}
