package netmgr

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// The configuration a manager applies to a link from a file the caller
// wrote (linux/network's persisted static configuration). Writing the file
// changes nothing in a running manager: networkd keeps its DHCP client on
// a link the file made static (and drops the static addresses as foreign
// when it next reconfigures), NetworkManager keeps the old profile active.
// NetworkdApply and NMApply make the manager load the file and configure
// the link from it, and return once the manager reports the link
// configured with the wanted addresses and no DHCPv4 lease.

// networkdConfigured reports whether d is the link networkd configured
// from file with every address of want and no DHCPv4 lease, and what it
// misses when not.
func (d *networkdLink) configured(file string, want []netip.Prefix) (bool, string) {
	if d.NetworkFile != file {
		return false, fmt.Sprintf("network file %q", d.NetworkFile)
	}
	// Configuring is enough: with its default IPv6AcceptRA= networkd
	// stays there until its router solicitations time out (about 12 s
	// without a router), after the document's addresses are on the link.
	if d.AdministrativeState != "configured" && d.AdministrativeState != "configuring" {
		return false, "state " + d.AdministrativeState
	}
	var static []netip.Prefix
	for _, a := range d.Addresses {
		ip, ok := netip.AddrFromSlice(a.Address)
		if !ok {
			continue
		}
		p := netip.PrefixFrom(ip.Unmap(), a.PrefixLength)
		if a.Family == unix.AF_INET && a.ConfigSource == "DHCPv4" {
			return false, "DHCPv4 lease " + p.String()
		}
		if a.ConfigSource == "static" && a.ConfigState == "configured" {
			static = append(static, p)
		}
	}
	for _, w := range want {
		if !slices.Contains(static, w) {
			return false, "address " + w.String() + " not configured"
		}
	}
	return true, ""
}

// NetworkdApply makes systemd-networkd configure iface from file (the
// .network file's path as networkd names it): Manager.Reload, so that
// networkd reads the files again, then Link.Reconfigure. It returns once
// networkd reports the link configured from file with every address of
// want (ConfigSource static), no DHCPv4 address and the MTU mtu (0: any);
// when networkd already does, it changes nothing. A refusal is an *Error with networkd's text; a
// link networkd leaves failed, unmanaged or configured from another file
// fails with that state; no such state before ctx ends is ctx's error with
// what was missing.
func (c *Conn) NetworkdApply(ctx context.Context, iface, file string, want []netip.Prefix, mtu int) (changed bool, err error) {
	path, d, err := c.networkdLinkOf(ctx, iface)
	if err != nil {
		return false, err
	}
	if ok, _ := d.configured(file, want); ok && (mtu == 0 || d.MTU == mtu) {
		return false, nil
	}
	sig, stop, err := c.watch(ctx, nd, path)
	if err != nil {
		return false, err
	}
	defer stop()
	if err := c.bus.Object(nd, ndPath).CallWithContext(ctx, ndManager+".Reload", 0).Err; err != nil {
		return false, wrap(Networkd, "Manager.Reload", iface, err)
	}
	if err := c.bus.Object(nd, path).CallWithContext(ctx, ndLink+".Reconfigure", 0).Err; err != nil {
		return true, wrap(Networkd, "Link.Reconfigure", iface, err)
	}
	missing := ""
	err = await(ctx, sig, func(*dbus.Signal) (bool, error) {
		d, err := c.describe(ctx, path, iface)
		if err != nil {
			return false, err
		}
		var ok bool
		ok, missing = d.configured(file, want)
		switch {
		case ok && mtu != 0 && d.MTU != mtu:
			return false, fmt.Errorf("%s Link.Reconfigure %s: networkd set the MTU to %d, not %d (it raises an MTU under 1280 on a link with IPv6)", Networkd, iface, d.MTU, mtu)
		case ok:
			return true, nil
		case d.AdministrativeState == "failed" || d.AdministrativeState == "unmanaged" || d.AdministrativeState == "linger":
			return false, fmt.Errorf("%s Link.Reconfigure %s: networkd left the link %s (network file %q), not configured from %s", Networkd, iface, d.AdministrativeState, d.NetworkFile, file)
		case d.AdministrativeState == "configured" && d.NetworkFile != file:
			return false, fmt.Errorf("%s Link.Reconfigure %s: networkd configured the link from %q, not %s (a file that sorts before it matches the link)", Networkd, iface, d.NetworkFile, file)
		}
		return false, nil
	}, func() string {
		return fmt.Sprintf("%s Link.Reconfigure %s: not configured from %s (%s)", Networkd, iface, file, missing)
	})
	return true, err
}

// NetworkdReload makes systemd-networkd read its files again and
// reconfigure iface (Manager.Reload, Link.Reconfigure), without waiting:
// for a file removed, after which the link goes back to whatever else
// configures it (a DHCP lease may take long).
func (c *Conn) NetworkdReload(ctx context.Context, iface string) error {
	path, err := c.networkdLinkPath(ctx, iface)
	if err != nil {
		return err
	}
	if err := c.bus.Object(nd, ndPath).CallWithContext(ctx, ndManager+".Reload", 0).Err; err != nil {
		return wrap(Networkd, "Manager.Reload", iface, err)
	}
	return wrap(Networkd, "Link.Reconfigure", iface, c.bus.Object(nd, path).CallWithContext(ctx, ndLink+".Reconfigure", 0).Err)
}

const nmSettings = nm + ".Settings"

// nmSettingsOf returns a saved connection's settings.
func (c *Conn) nmSettingsOf(ctx context.Context, conn dbus.ObjectPath) (map[string]map[string]dbus.Variant, error) {
	var s map[string]map[string]dbus.Variant
	if err := c.bus.Object(nm, conn).CallWithContext(ctx, nmSettings+".Connection.GetSettings", 0).Store(&s); err != nil {
		return nil, wrap(NetworkManager, "Settings.Connection.GetSettings", string(conn), err)
	}
	return s, nil
}

// nmConnectionByFile finds the saved connection NetworkManager loaded from
// file ("" if none).
func (c *Conn) nmConnectionByFile(ctx context.Context, file string) (dbus.ObjectPath, error) {
	var conns []dbus.ObjectPath
	if err := c.bus.Object(nm, nmPath+"/Settings").CallWithContext(ctx, nmSettings+".ListConnections", 0).Store(&conns); err != nil {
		return "", wrap(NetworkManager, "Settings.ListConnections", file, err)
	}
	for _, p := range conns {
		v, err := c.bus.Object(nm, p).GetProperty(nmSettings + ".Connection.Filename")
		if err != nil {
			continue // removed meanwhile
		}
		if f, _ := v.Value().(string); f == file {
			return p, nil
		}
	}
	return "", nil
}

// NMApply makes NetworkManager load the keyfile file
// (Settings.LoadConnections) and activate it on iface
// (ActivateConnection; Device.Reapply when it is already active there),
// and returns once the device is activated with that
// connection, every IPv4 address of want in its IP4Config and no DHCPv4
// lease. When it already is (and the file is unchanged, which
// LoadConnections tells), it changes nothing. A keyfile NetworkManager
// refuses to load fails, naming the file; a refused activation is an
// *Error with NetworkManager's text; a device that fails the activation
// fails with its state and reason.
func (c *Conn) NMApply(ctx context.Context, iface, file string, want []netip.Prefix) (changed bool, err error) {
	dev, err := c.nmDevicePath(ctx, iface)
	if err != nil {
		return false, err
	}
	sig, stop, err := c.watch(ctx, nm, nmPath)
	if err != nil {
		return false, err
	}
	defer stop()
	// The profile as NetworkManager held it before the load: one the
	// load left as it was, and active with the document's addresses,
	// needs no activation (LoadConnections tells nothing of a change).
	before, err := c.nmConnectionByFile(ctx, file)
	if err != nil {
		return false, err
	}
	var was map[string]map[string]dbus.Variant
	if before != "" {
		was, _ = c.nmSettingsOf(ctx, before)
	}
	var tried bool
	var failures []string
	if err := c.bus.Object(nm, nmPath+"/Settings").CallWithContext(ctx, nmSettings+".LoadConnections", 0, []string{file}).Store(&tried, &failures); err != nil {
		return false, wrap(NetworkManager, "Settings.LoadConnections", file, err)
	}
	if slices.Contains(failures, file) {
		return true, fmt.Errorf("%s Settings.LoadConnections %s: NetworkManager refused the keyfile (its journal says why)", NetworkManager, file)
	}
	conn, err := c.nmConnectionByFile(ctx, file)
	if err != nil {
		return false, err
	}
	if conn == "" {
		return true, fmt.Errorf("%s Settings.LoadConnections %s: no connection from that file after loading it", NetworkManager, file)
	}
	var want4 []netip.Prefix
	for _, w := range want {
		if w.Addr().Is4() {
			want4 = append(want4, w)
		}
	}
	done := func(v nmView, active dbus.ObjectPath) bool {
		if v.state != nmActivated || v.lease.Valid() || active == "" {
			return false
		}
		if c.nmProfileOf(active) != conn {
			return false
		}
		for _, w := range want4 {
			if !slices.Contains(v.applied, w) {
				return false
			}
		}
		return true
	}
	activeOf := func() dbus.ObjectPath {
		p, err := c.bus.Object(nm, dev).GetProperty(nmDevice + ".ActiveConnection")
		if err != nil {
			return ""
		}
		a, _ := p.Value().(dbus.ObjectPath)
		if a == "/" {
			return ""
		}
		return a
	}
	v, err := c.nmRead(ctx, dev, iface)
	if err != nil {
		return false, err
	}
	now, err := c.nmSettingsOf(ctx, conn)
	if err != nil {
		return false, err
	}
	if conn == before && reflect.DeepEqual(was, now) && done(v, activeOf()) {
		return false, nil // the same profile, already active
	}
	drain(sig)
	var active dbus.ObjectPath
	method := "ActivateConnection"
	// The profile already active on the device (a changed document):
	// Device.Reapply of the reloaded profile (empty settings: the saved
	// ones) changes addresses and routes in place, without deactivating
	// the device. A change NetworkManager cannot reapply is refused, and
	// the profile is activated again instead.
	if cur := activeOf(); cur != "" && v.state == nmActivated && c.nmProfileOf(cur) == conn {
		if c.bus.Object(nm, dev).CallWithContext(ctx, nmDevice+".Reapply", 0, map[string]map[string]dbus.Variant{}, uint64(0), uint32(0)).Err == nil {
			active, method = cur, "Device.Reapply"
		}
	}
	if active == "" {
		if err := c.bus.Object(nm, nmPath).CallWithContext(ctx, nm+".ActivateConnection", 0, conn, dev, dbus.ObjectPath("/")).Store(&active); err != nil {
			return true, wrap(NetworkManager, "ActivateConnection", iface, err)
		}
	}
	var last nmView
	var readErr error
	err = await(ctx, sig, func(*dbus.Signal) (bool, error) {
		// An object the device named may be gone by the time it is read
		// (the old profile's DHCP4Config): read again later.
		v, err := c.nmRead(ctx, dev, iface)
		if readErr = err; err != nil {
			return false, nil
		}
		last = v
		// The active connection's state: 4 is deactivated; an object
		// gone is one NetworkManager removed after deactivating it.
		var acState uint32
		p, err := c.bus.Object(nm, active).GetProperty(nm + ".Connection.Active.State")
		if err == nil {
			acState, _ = p.Value().(uint32)
		}
		if err != nil || acState == 4 || v.state == nmFailed {
			return false, fmt.Errorf("%s %s %s: the activation of %s failed (device %s, reason %d)", NetworkManager, method, iface, file, nmStateName(v.state), v.reason)
		}
		cur := activeOf()
		return cur == active && done(v, cur), nil
	}, func() string {
		return fmt.Sprintf("%s %s %s: not activated with %s (device %s, addresses %v, lease %v, last read error %v)", NetworkManager, method, iface, file, nmStateName(last.state), last.applied, last.lease.Address, readErr)
	})
	return true, err
}

// nmProfileOf is the saved connection an active connection activated
// ("" if it is gone).
func (c *Conn) nmProfileOf(active dbus.ObjectPath) dbus.ObjectPath {
	p, err := c.bus.Object(nm, active).GetProperty(nm + ".Connection.Active.Connection")
	if err != nil {
		return ""
	}
	conn, _ := p.Value().(dbus.ObjectPath)
	return conn
}

// NMReload makes NetworkManager read its keyfiles again
// (Settings.ReloadConnections): after one is removed, the profile it held
// goes and the device is left to NetworkManager's other profiles.
func (c *Conn) NMReload(ctx context.Context) error {
	var ok bool
	err := c.bus.Object(nm, nmPath+"/Settings").CallWithContext(ctx, nmSettings+".ReloadConnections", 0).Store(&ok)
	return wrap(NetworkManager, "Settings.ReloadConnections", "", err)
}
