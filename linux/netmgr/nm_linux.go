package netmgr

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	nm       = "org.freedesktop.NetworkManager"
	nmPath   = dbus.ObjectPath("/org/freedesktop/NetworkManager")
	nmDevice = nm + ".Device"
	nmDHCP4  = nm + ".DHCP4Config"

	// NetworkManager's device states (NMDeviceState).
	nmUnmanaged    = 10
	nmUnavailable  = 20
	nmDisconnected = 30
	nmActivated    = 100
	nmDeactivating = 110
	nmFailed       = 120
)

// NMOptions tune one NetworkManager renewal.
type NMOptions struct {
	// Hostname is sent as the DHCP host name (ipv4.dhcp-hostname of the
	// applied connection), unless the connection has
	// ipv4.dhcp-send-hostname off or an ipv4.dhcp-fqdn. "" keeps the
	// connection's setting.
	Hostname string
}

func nmStateName(s uint32) string {
	switch s {
	case nmUnmanaged:
		return "unmanaged"
	case nmUnavailable:
		return "unavailable"
	case nmDisconnected:
		return "disconnected"
	case nmActivated:
		return "activated"
	case nmDeactivating:
		return "deactivating"
	case nmFailed:
		return "failed"
	}
	return "state " + strconv.FormatUint(uint64(s), 10)
}

// nmDevicePath finds iface's device object.
func (c *Conn) nmDevicePath(ctx context.Context, iface string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	err := c.bus.Object(nm, nmPath).CallWithContext(ctx, nm+".GetDeviceByIpIface", 0, iface).Store(&path)
	if err != nil {
		return "", wrap(NetworkManager, "GetDeviceByIpIface", iface, err)
	}
	return path, nil
}

// nmView is what a renewal reads of a device: its state and DHCPv4 lease.
type nmView struct {
	state  uint32
	reason uint32
	lease  Lease
	expiry string          // the lease's "expiry" option, verbatim
	cfg    dbus.ObjectPath // the device's DHCP4Config
	// applied is the device's IPv4 addresses as NetworkManager configured
	// them (IP4Config): a new lease is in DHCP4Config before it is here.
	applied []netip.Prefix
	// obtained is when the lease was given (expiry less its lease time,
	// whole seconds); zero if not told.
	obtained time.Time
}

func (c *Conn) nmRead(ctx context.Context, dev dbus.ObjectPath, iface string) (nmView, error) {
	var v nmView
	var props map[string]dbus.Variant
	if err := c.bus.Object(nm, dev).CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, nmDevice).Store(&props); err != nil {
		return v, wrap(NetworkManager, "Device.GetAll", iface, err)
	}
	v.state, _ = props["State"].Value().(uint32)
	if sr, ok := props["StateReason"].Value().([]any); ok && len(sr) == 2 {
		v.reason, _ = sr[1].(uint32)
	}
	if ip4, _ := props["Ip4Config"].Value().(dbus.ObjectPath); ip4 != "" && ip4 != "/" {
		var data []map[string]dbus.Variant
		if err := c.bus.Object(nm, ip4).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, nm+".IP4Config", "AddressData").Store(&data); err != nil {
			return v, wrap(NetworkManager, "IP4Config.AddressData", iface, err)
		}
		for _, d := range data {
			a, _ := d["address"].Value().(string)
			if p, _ := d["prefix"].Value().(uint32); ipv4(a).IsValid() {
				v.applied = append(v.applied, netip.PrefixFrom(ipv4(a), int(p)))
			}
		}
	}
	cfg, _ := props["Dhcp4Config"].Value().(dbus.ObjectPath)
	if cfg == "" || cfg == "/" {
		return v, nil
	}
	v.cfg = cfg
	var opts map[string]dbus.Variant
	if err := c.bus.Object(nm, cfg).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, nmDHCP4, "Options").Store(&opts); err != nil {
		return v, wrap(NetworkManager, "DHCP4Config.Options", iface, err)
	}
	v.lease, v.expiry = nmLease(iface, opts)
	lt, err := strconv.ParseInt(fmt.Sprint(opts["dhcp_lease_time"].Value()), 10, 64)
	if err == nil && !v.lease.Expires.IsZero() {
		v.obtained = v.lease.Expires.Add(-time.Duration(lt) * time.Second)
	}
	return v, nil
}

// nmLease reads a lease from a DHCP4Config's options (string values).
func nmLease(iface string, opts map[string]dbus.Variant) (Lease, string) {
	str := func(k string) string { s, _ := opts[k].Value().(string); return s }
	addr := ipv4(str("ip_address"))
	if !addr.IsValid() {
		return Lease{}, ""
	}
	bits := 32
	if m := ipv4(str("subnet_mask")); m.IsValid() {
		b := m.As4()
		ones := 0
		for _, x := range b {
			for ; x&0x80 != 0; x <<= 1 {
				ones++
			}
		}
		bits = ones
	}
	l := Lease{Manager: NetworkManager, Interface: iface, Address: netip.PrefixFrom(addr, bits), Server: ipv4(str("dhcp_server_identifier"))}
	if s, err := strconv.ParseInt(str("expiry"), 10, 64); err == nil {
		l.Expires = time.Unix(s, 0)
	}
	return l, str("expiry")
}

// NMLease returns NetworkManager's current DHCPv4 lease of iface (not
// Valid if it has none).
func (c *Conn) NMLease(ctx context.Context, iface string) (Lease, error) {
	dev, err := c.nmDevicePath(ctx, iface)
	if err != nil {
		return Lease{}, err
	}
	v, err := c.nmRead(ctx, dev, iface)
	return v.lease, err
}

// NMRenew makes NetworkManager restart the DHCP transaction of iface's
// active connection (Device.Reapply with a changed DHCP setting, see the
// package doc) and returns the new lease once the device's DHCP4Config
// reports it (in DHCP4Config, and its address in IP4Config). A refusal (an unknown device, one not activated) is an
// *Error with NetworkManager's text; a device that leaves the activated
// state fails with its state and reason; no new lease before ctx ends is
// ctx's error.
func (c *Conn) NMRenew(ctx context.Context, iface string, o NMOptions) (Lease, error) {
	dev, err := c.nmDevicePath(ctx, iface)
	if err != nil {
		return Lease{}, err
	}
	sig, stop, err := c.watch(ctx, nm, nmPath)
	if err != nil {
		return Lease{}, err
	}
	defer stop()
	before, err := c.nmRead(ctx, dev, iface)
	if err != nil {
		return Lease{}, err
	}
	obj := c.bus.Object(nm, dev)
	var settings map[string]map[string]dbus.Variant
	var version uint64
	if err := obj.CallWithContext(ctx, nmDevice+".GetAppliedConnection", 0, uint32(0)).Store(&settings, &version); err != nil {
		return Lease{}, wrap(NetworkManager, "Device.GetAppliedConnection", iface, err)
	}
	ip4 := settings["ipv4"]
	if ip4 == nil {
		return Lease{}, fmt.Errorf("%s Device.GetAppliedConnection %s: the active connection has no ipv4 setting", NetworkManager, iface)
	}
	if m, _ := ip4["method"].Value().(string); m != "auto" {
		return Lease{}, fmt.Errorf("%s %s: ipv4.method is %q, not auto (DHCP)", NetworkManager, iface, m)
	}
	renewSettings(settings, o.Hostname)
	// NetworkManager reports a lease's expiry in whole seconds and
	// announces nothing for a lease identical to the one it has: a new
	// ACK within the second of the last one could not be told from it. So
	// a renewal starts in a later second than the lease it replaces.
	if t := before.obtained; !t.IsZero() && time.Now().Unix() <= t.Unix() {
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("%s %s: %w", NetworkManager, iface, ctx.Err())
		case <-time.After(time.Until(time.Unix(t.Unix()+1, 0))):
		}
	}
	drain(sig)
	if err := obj.CallWithContext(ctx, nmDevice+".Reapply", 0, settings, version, uint32(0)).Err; err != nil {
		return Lease{}, wrap(NetworkManager, "Device.Reapply", iface, err)
	}
	var got nmView
	// fresh: a DHCP4Config announced options holding a lease since the
	// Reapply. A renewal within the second of the last one has the same
	// "expiry" (whole seconds), so the options alone cannot tell it.
	fresh := false
	err = await(ctx, sig, func(s *dbus.Signal) (bool, error) {
		v, err := c.nmRead(ctx, dev, iface)
		if err != nil {
			return false, err
		}
		got = v
		fresh = fresh || (leaseAnnounced(s) && s.Path == v.cfg)
		switch v.state {
		case nmActivated:
		case nmFailed, nmDisconnected, nmUnavailable, nmUnmanaged, nmDeactivating:
			return false, fmt.Errorf("%s %s: device went %s (reason %d) during the DHCP renewal", NetworkManager, iface, nmStateName(v.state), v.reason)
		default:
			return false, nil
		}
		return v.lease.Valid() && slices.Contains(v.applied, v.lease.Address) &&
			(fresh || v.expiry != before.expiry || v.lease.Address != before.lease.Address), nil
	}, func() string {
		return fmt.Sprintf("%s Device.Reapply %s: no new lease (device %s, lease %v)", NetworkManager, iface, nmStateName(got.state), before.lease.Address)
	})
	if err != nil {
		return Lease{}, err
	}
	return got.lease, nil
}

// leaseAnnounced reports whether s is a DHCP4Config's PropertiesChanged
// with options holding a lease.
func leaseAnnounced(s *dbus.Signal) bool {
	if s == nil || len(s.Body) < 2 {
		return false
	}
	if iface, _ := s.Body[0].(string); iface != nmDHCP4 {
		return false
	}
	changed, _ := s.Body[1].(map[string]dbus.Variant)
	opts, _ := changed["Options"].Value().(map[string]dbus.Variant)
	l, _ := nmLease("", opts)
	return l.Valid()
}

// renewSettings changes the applied connection so that Reapply restarts
// DHCP: the host name to send, else ipv4.dhcp-timeout moved by a second
// (0, NetworkManager's default of 45 s, becomes 45; then 45 and 46
// alternate). It also drops the deprecated "addresses" and "routes" forms
// that "address-data" and "route-data" carry too: their structs do not
// survive a D-Bus round trip through generic values.
func renewSettings(s map[string]map[string]dbus.Variant, hostname string) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		if m := s[fam]; m != nil {
			if _, ok := m["address-data"]; ok {
				delete(m, "addresses")
			}
			if _, ok := m["route-data"]; ok {
				delete(m, "routes")
			}
		}
	}
	ip4 := s["ipv4"]
	send := true
	if v, ok := ip4["dhcp-send-hostname"].Value().(bool); ok {
		send = v
	}
	fqdn, _ := ip4["dhcp-fqdn"].Value().(string)
	if cur, _ := ip4["dhcp-hostname"].Value().(string); send && fqdn == "" && hostname != "" && cur != hostname {
		ip4["dhcp-hostname"] = dbus.MakeVariant(hostname)
		return
	}
	t, _ := ip4["dhcp-timeout"].Value().(int32)
	switch {
	case t == 0:
		t = 45
	case t%2 == 1 && t < math.MaxInt32:
		// MaxInt32 is NetworkManager's "infinity", and odd: one more
		// would wrap to a negative timeout, which Reapply refuses.
		t++
	default:
		t--
	}
	ip4["dhcp-timeout"] = dbus.MakeVariant(t)
}
