package virt

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"libvirt.org/go/libvirtxml"
)

// ErrNotFound is returned (wrapped) when a domain, network, pool or volume
// does not exist.
var ErrNotFound = errors.New("not found")

// Libvirt is the controller's hypervisor: libvirtd's RPC over its Unix
// socket. It reconnects on the next call after the connection drops.
type Libvirt struct {
	socket string

	mu sync.Mutex
	l  *golibvirt.Libvirt
}

// Dial connects to libvirtd's socket (qemu:///system).
func Dial(socket string) (*Libvirt, error) {
	v := &Libvirt{socket: socket}
	if _, err := v.conn(); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Libvirt) conn() (*golibvirt.Libvirt, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.l != nil && v.l.IsConnected() {
		return v.l, nil
	}
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(v.socket), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("libvirt unreachable at %s: %w", v.socket, err)
	}
	v.l = l
	return l, nil
}

// Close disconnects.
func (v *Libvirt) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.l == nil {
		return nil
	}
	err := v.l.Disconnect()
	v.l = nil
	return err
}

func code(err error) uint32 {
	var e golibvirt.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func notFound(err error, what string) error {
	switch golibvirt.ErrorNumber(code(err)) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork, golibvirt.ErrNoStoragePool, golibvirt.ErrNoStorageVol:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// lookup connects and finds the named domain, network or storage pool; an
// absent one wraps ErrNotFound.
func lookup[T any](v *Libvirt, what, name string, find func(*golibvirt.Libvirt, string) (T, error)) (*golibvirt.Libvirt, T, error) {
	var zero T
	l, err := v.conn()
	if err != nil {
		return nil, zero, err
	}
	x, err := find(l, name)
	if err != nil {
		return nil, zero, notFound(err, what+" "+name)
	}
	return l, x, nil
}

func (v *Libvirt) domain(name string) (*golibvirt.Libvirt, golibvirt.Domain, error) {
	return lookup(v, "domain", name, (*golibvirt.Libvirt).DomainLookupByName)
}

func (v *Libvirt) network(name string) (*golibvirt.Libvirt, golibvirt.Network, error) {
	return lookup(v, "network", name, (*golibvirt.Libvirt).NetworkLookupByName)
}

func (v *Libvirt) storagePool(name string) (*golibvirt.Libvirt, golibvirt.StoragePool, error) {
	return lookup(v, "storage pool", name, (*golibvirt.Libvirt).StoragePoolLookupByName)
}

// networkXML reads and parses the network's definition.
func networkXML(l *golibvirt.Libvirt, net golibvirt.Network) (libvirtxml.Network, error) {
	var x libvirtxml.Network
	desc, err := l.NetworkGetXMLDesc(net, 0)
	if err != nil {
		return x, fmt.Errorf("read network %q: %w", net.Name, err)
	}
	if err := x.Unmarshal(desc); err != nil {
		return x, fmt.Errorf("parse network %q: %w", net.Name, err)
	}
	return x, nil
}

// EnsureNetwork defines, starts and autostarts the network if it does not
// exist; an existing one must have the same bridge and address, or the
// error says what differs (it is never redefined under running guests).
func (v *Libvirt) EnsureNetwork(_ context.Context, n NetworkSpec) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	net, err := l.NetworkLookupByName(n.Name)
	if err != nil {
		if golibvirt.ErrorNumber(code(err)) != golibvirt.ErrNoNetwork {
			return fmt.Errorf("look up network %q: %w", n.Name, err)
		}
		x, err := NetworkXML(n)
		if err != nil {
			return err
		}
		if net, err = l.NetworkDefineXML(x); err != nil {
			return fmt.Errorf("define network %q: %w", n.Name, err)
		}
	} else {
		have, err := networkXML(l, net)
		if err != nil {
			return err
		}
		if have.Bridge == nil || have.Bridge.Name != n.Bridge {
			return fmt.Errorf("network %q exists with another bridge than %q: remove it or fix the config", n.Name, n.Bridge)
		}
		if len(have.IPs) == 0 || have.IPs[0].Address != n.Gateway().String() || int(have.IPs[0].Prefix) != n.Prefix.Bits() {
			return fmt.Errorf("network %q exists with another address than %s/%d: remove it or fix the config", n.Name, n.Gateway(), n.Prefix.Bits())
		}
		if have.MAC == nil || !strings.EqualFold(have.MAC.Address, BridgeMAC) {
			return fmt.Errorf("network %q exists with another bridge MAC than %s (every pool and tenant bridge shares it, so a claimed guest keeps its gateway): remove it or fix its <mac>", n.Name, BridgeMAC)
		}
		if have.Forward != nil {
			return fmt.Errorf("network %q exists with <forward mode=%q>: pool and tenant networks must be isolated", n.Name, have.Forward.Mode)
		}
	}
	active, err := l.NetworkIsActive(net)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if active == 0 {
		if err := l.NetworkCreate(net); err != nil {
			return fmt.Errorf("start network %q: %w", n.Name, err)
		}
	}
	if err := l.NetworkSetAutostart(net, 1); err != nil {
		return fmt.Errorf("autostart network %q: %w", n.Name, err)
	}
	return nil
}

// DHCPHost is one reservation of a network.
type DHCPHost struct{ MAC, IP, Name string }

// DHCPHosts lists the network's reservations (libvirt's network XML is the
// truth of which addresses are taken).
func (v *Libvirt) DHCPHosts(_ context.Context, network string) ([]DHCPHost, error) {
	l, net, err := v.network(network)
	if err != nil {
		return nil, err
	}
	x, err := networkXML(l, net)
	if err != nil {
		return nil, err
	}
	var out []DHCPHost
	for _, ip := range x.IPs {
		if ip.DHCP == nil {
			continue
		}
		for _, h := range ip.DHCP.Hosts {
			out = append(out, DHCPHost{MAC: h.MAC, IP: h.IP, Name: h.Name})
		}
	}
	return out, nil
}

// Leases returns the network's active DHCP leases: address -> MAC.
func (v *Libvirt) Leases(_ context.Context, network string) (map[netip.Addr]string, error) {
	l, net, err := v.network(network)
	if err != nil {
		return nil, err
	}
	leases, _, err := l.NetworkGetDhcpLeases(net, nil, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("leases of network %q: %w", network, err)
	}
	out := map[netip.Addr]string{}
	for _, le := range leases {
		a, err := netip.ParseAddr(le.Ipaddr)
		if err != nil || len(le.Mac) == 0 {
			continue
		}
		out[a] = le.Mac[0]
	}
	return out, nil
}

// AddDHCPHost reserves ip for mac on the network (live and persistent);
// libvirt re-reads dnsmasq's hosts file.
func (v *Libvirt) AddDHCPHost(_ context.Context, network, mac, ip, name string) error {
	l, net, err := v.network(network)
	if err != nil {
		return err
	}
	x, err := DHCPHostXML(mac, ip, name)
	if err != nil {
		return err
	}
	if err := l.NetworkUpdateCompat(net, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionIPDhcpHost, -1, x,
		golibvirt.NetworkUpdateAffectLive|golibvirt.NetworkUpdateAffectConfig); err != nil {
		return fmt.Errorf("reserve %s for %s on network %q: %w", ip, mac, network, err)
	}
	return nil
}

// RemoveDHCPHost drops mac's reservation from the network; an absent one
// is not an error.
func (v *Libvirt) RemoveDHCPHost(ctx context.Context, network, mac string) error {
	hosts, err := v.DHCPHosts(ctx, network)
	if err != nil {
		return err
	}
	l, net, err := v.network(network)
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if !strings.EqualFold(h.MAC, mac) {
			continue
		}
		x, err := DHCPHostXML(h.MAC, h.IP, h.Name)
		if err != nil {
			return err
		}
		if err := l.NetworkUpdateCompat(net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionIPDhcpHost, -1, x,
			golibvirt.NetworkUpdateAffectLive|golibvirt.NetworkUpdateAffectConfig); err != nil {
			return fmt.Errorf("drop reservation of %s on network %q: %w", mac, network, err)
		}
	}
	return nil
}

// EnsureStoragePool defines, builds and starts the dir pool of overlays.
func (v *Libvirt) EnsureStoragePool(_ context.Context, name, dir string) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	p, err := l.StoragePoolLookupByName(name)
	if err != nil {
		if golibvirt.ErrorNumber(code(err)) != golibvirt.ErrNoStoragePool {
			return fmt.Errorf("look up storage pool %q: %w", name, err)
		}
		x, err := PoolXML(name, dir)
		if err != nil {
			return err
		}
		if p, err = l.StoragePoolDefineXML(x, 0); err != nil {
			return fmt.Errorf("define storage pool %q: %w", name, err)
		}
		if err := l.StoragePoolBuild(p, 0); err != nil {
			return fmt.Errorf("build storage pool %q (%s): %w", name, dir, err)
		}
	} else {
		desc, err := l.StoragePoolGetXMLDesc(p, 0)
		if err != nil {
			return fmt.Errorf("read storage pool %q: %w", name, err)
		}
		var have libvirtxml.StoragePool
		if err := have.Unmarshal(desc); err != nil {
			return fmt.Errorf("parse storage pool %q: %w", name, err)
		}
		if have.Target == nil || filepath.Clean(have.Target.Path) != filepath.Clean(dir) {
			return fmt.Errorf("storage pool %q exists with another directory than %s: remove it or fix the config", name, dir)
		}
	}
	active, err := l.StoragePoolIsActive(p)
	if err != nil {
		return fmt.Errorf("storage pool %q: %w", name, err)
	}
	if active == 0 {
		if err := l.StoragePoolCreate(p, 0); err != nil {
			return fmt.Errorf("start storage pool %q: %w", name, err)
		}
	}
	if err := l.StoragePoolSetAutostart(p, 1); err != nil {
		return fmt.Errorf("autostart storage pool %q: %w", name, err)
	}
	return nil
}

// CreateOverlay creates volume name in the pool, a qcow2 whose backing
// file is backing, and returns its path.
func (v *Libvirt) CreateOverlay(_ context.Context, pool, name, backing string) (string, error) {
	l, p, err := v.storagePool(pool)
	if err != nil {
		return "", err
	}
	x, err := VolumeXML(name, backing)
	if err != nil {
		return "", err
	}
	vol, err := l.StorageVolCreateXML(p, x, 0)
	if err != nil {
		return "", fmt.Errorf("create overlay %q on %s: %w", name, backing, err)
	}
	path, err := l.StorageVolGetPath(vol)
	if err != nil {
		return "", fmt.Errorf("overlay %q: %w", name, err)
	}
	return path, nil
}

// DeleteOverlay deletes the volume; an absent one is not an error.
func (v *Libvirt) DeleteOverlay(_ context.Context, pool, name string) error {
	l, p, err := v.storagePool(pool)
	if err != nil {
		return err
	}
	vol, err := l.StorageVolLookupByName(p, name)
	if err != nil {
		if golibvirt.ErrorNumber(code(err)) == golibvirt.ErrNoStorageVol {
			return nil
		}
		return fmt.Errorf("look up overlay %q: %w", name, err)
	}
	if err := l.StorageVolDelete(vol, 0); err != nil {
		return fmt.Errorf("delete overlay %q: %w", name, err)
	}
	return nil
}

// Overlays lists the volumes of the pool.
func (v *Libvirt) Overlays(_ context.Context, pool string) ([]string, error) {
	l, p, err := v.storagePool(pool)
	if err != nil {
		return nil, err
	}
	if err := l.StoragePoolRefresh(p, 0); err != nil {
		return nil, fmt.Errorf("refresh storage pool %q: %w", pool, err)
	}
	vols, _, err := l.StoragePoolListAllVolumes(p, 1, 0)
	if err != nil {
		return nil, fmt.Errorf("list storage pool %q: %w", pool, err)
	}
	out := make([]string, 0, len(vols))
	for _, vol := range vols {
		out = append(out, vol.Name)
	}
	return out, nil
}

// DefineAndStart defines the domain persistently and starts it.
func (v *Libvirt) DefineAndStart(_ context.Context, domXML string) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	dom, err := l.DomainDefineXMLFlags(domXML, 0)
	if err != nil {
		return fmt.Errorf("define domain: %w", err)
	}
	if _, err := l.DomainCreateWithFlags(dom, 0); err != nil {
		// Leave nothing half-done: a defined domain that cannot start goes.
		_ = l.DomainUndefineFlags(dom, 0)
		return fmt.Errorf("start domain %q: %w", dom.Name, err)
	}
	return nil
}

// Domain is one domain that carries the controller's metadata.
type Domain struct {
	Name    string
	Running bool
	Meta    Meta
}

// Domains lists the domains carrying prewarm metadata; others are not the
// controller's and are left alone.
func (v *Libvirt) Domains(_ context.Context) ([]Domain, error) {
	l, err := v.conn()
	if err != nil {
		return nil, err
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []Domain
	for _, d := range doms {
		s, err := l.DomainGetMetadata(d, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetaNS}, 0)
		if err != nil {
			continue // no prewarm metadata (or gone since listing): not ours
		}
		m, err := UnmarshalMeta(s)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", d.Name, err)
		}
		st, _, err := l.DomainGetState(d, 0)
		if err != nil {
			return nil, notFound(err, "domain "+d.Name)
		}
		out = append(out, Domain{Name: d.Name, Running: golibvirt.DomainState(st) == golibvirt.DomainRunning, Meta: m})
	}
	return out, nil
}

// SetMeta writes the domain's prewarm metadata (live and persistent).
func (v *Libvirt) SetMeta(_ context.Context, name string, m Meta) error {
	l, dom, err := v.domain(name)
	if err != nil {
		return err
	}
	x, err := MarshalMeta(m)
	if err != nil {
		return err
	}
	if err := l.DomainSetMetadata(dom, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{x}, golibvirt.OptString{MetaPrefix},
		golibvirt.OptString{MetaNS}, golibvirt.DomainAffectLive|golibvirt.DomainAffectConfig); err != nil {
		return fmt.Errorf("write metadata of %q: %w", name, err)
	}
	return nil
}

// UpdateInterface changes the running domain's NIC in one
// virDomainUpdateDeviceFlags: its network (the tap moves to the other
// bridge) and its link state (QEMU's set_link), live and persistent.
func (v *Libvirt) UpdateInterface(_ context.Context, name string, nic NIC) error {
	l, dom, err := v.domain(name)
	if err != nil {
		return err
	}
	x, err := InterfaceString(nic)
	if err != nil {
		return err
	}
	if err := l.DomainUpdateDeviceFlags(dom, x, golibvirt.DomainDeviceModifyLive|golibvirt.DomainDeviceModifyConfig); err != nil {
		return fmt.Errorf("update interface of %q: %w", name, err)
	}
	return nil
}

// Destroy stops and undefines the domain; an absent one is not an error.
func (v *Libvirt) Destroy(_ context.Context, name string) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	dom, err := l.DomainLookupByName(name)
	if err != nil {
		if golibvirt.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up domain %q: %w", name, err)
	}
	if err := l.DomainDestroyFlags(dom, 0); err != nil && golibvirt.ErrorNumber(code(err)) != golibvirt.ErrOperationInvalid && !golibvirt.IsNotFound(err) {
		return fmt.Errorf("destroy domain %q: %w", name, err)
	}
	if err := l.DomainUndefineFlags(dom, 0); err != nil && !golibvirt.IsNotFound(err) {
		return fmt.Errorf("undefine domain %q: %w", name, err)
	}
	return nil
}

// Suspend pauses the running domain's vCPUs (virDomainSuspend).
func (v *Libvirt) Suspend(_ context.Context, name string) error {
	return v.onDomain(name, "suspend", (*golibvirt.Libvirt).DomainSuspend)
}

// Resume lets a suspended domain run again (virDomainResume).
func (v *Libvirt) Resume(_ context.Context, name string) error {
	return v.onDomain(name, "resume", (*golibvirt.Libvirt).DomainResume)
}

// onDomain looks the domain up and applies do to it; a failure is
// "<verb> domain <name>: <err>".
func (v *Libvirt) onDomain(name, verb string, do func(*golibvirt.Libvirt, golibvirt.Domain) error) error {
	l, dom, err := v.domain(name)
	if err != nil {
		return err
	}
	if err := do(l, dom); err != nil {
		return fmt.Errorf("%s domain %q: %w", verb, name, err)
	}
	return nil
}
