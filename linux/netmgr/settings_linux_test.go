package netmgr

import (
	"math"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

func TestRenewSettings(t *testing.T) {
	v := dbus.MakeVariant
	for _, tc := range []struct {
		name     string
		ipv4     map[string]dbus.Variant
		hostname string
		wantHost any // ipv4.dhcp-hostname after (nil: absent)
		wantTime any // ipv4.dhcp-timeout after (nil: absent)
	}{
		{"new host name", map[string]dbus.Variant{"method": v("auto")}, "web-1", "web-1", nil},
		{"host name changed", map[string]dbus.Variant{"method": v("auto"), "dhcp-hostname": v("old")}, "web-1", "web-1", nil},
		{"same host name: default timeout moved", map[string]dbus.Variant{"method": v("auto"), "dhcp-hostname": v("web-1")}, "web-1", "web-1", int32(45)},
		{"same host name: 45 becomes 46", map[string]dbus.Variant{"method": v("auto"), "dhcp-hostname": v("web-1"), "dhcp-timeout": v(int32(45))}, "web-1", "web-1", int32(46)},
		{"46 becomes 45", map[string]dbus.Variant{"method": v("auto"), "dhcp-timeout": v(int32(46))}, "", nil, int32(45)},
		{"infinity (MaxInt32) does not wrap", map[string]dbus.Variant{"method": v("auto"), "dhcp-timeout": v(int32(math.MaxInt32))}, "", nil, int32(math.MaxInt32 - 1)},
		{"send-hostname off keeps the name", map[string]dbus.Variant{"method": v("auto"), "dhcp-send-hostname": v(false)}, "web-1", nil, int32(45)},
		{"an FQDN setting keeps the name", map[string]dbus.Variant{"method": v("auto"), "dhcp-fqdn": v("a.example.com")}, "web-1", nil, int32(45)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := map[string]map[string]dbus.Variant{"ipv4": tc.ipv4}
			renewSettings(s, tc.hostname)
			got := func(k string) any {
				x, ok := s["ipv4"][k]
				if !ok {
					return nil
				}
				return x.Value()
			}
			if h := got("dhcp-hostname"); h != tc.wantHost {
				t.Errorf("dhcp-hostname = %v, want %v", h, tc.wantHost)
			}
			if to := got("dhcp-timeout"); to != tc.wantTime {
				t.Errorf("dhcp-timeout = %v, want %v", to, tc.wantTime)
			}
		})
	}
}

func TestRenewSettingsDropsDeprecatedForms(t *testing.T) {
	s := map[string]map[string]dbus.Variant{
		"ipv4": {"method": dbus.MakeVariant("auto"), "addresses": dbus.MakeVariant([][]uint32{}), "address-data": dbus.MakeVariant([]map[string]dbus.Variant{}),
			"routes": dbus.MakeVariant([][]uint32{})},
		"ipv6": {"addresses": dbus.MakeVariant([]any{}), "address-data": dbus.MakeVariant([]map[string]dbus.Variant{}),
			"routes": dbus.MakeVariant([]any{}), "route-data": dbus.MakeVariant([]map[string]dbus.Variant{})},
	}
	renewSettings(s, "h")
	for _, k := range []string{"ipv6.addresses", "ipv6.routes", "ipv4.addresses"} {
		fam, key := k[:4], k[5:]
		if _, ok := s[fam][key]; ok {
			t.Errorf("%s kept beside its -data form", k)
		}
	}
	// No route-data in ipv4: its routes stay.
	if _, ok := s["ipv4"]["routes"]; !ok {
		t.Error("ipv4.routes dropped without ipv4.route-data")
	}
}

func TestNMLease(t *testing.T) {
	v := dbus.MakeVariant
	l, exp := nmLease("eth0", map[string]dbus.Variant{
		"ip_address": v("10.77.0.61"), "subnet_mask": v("255.255.252.0"),
		"dhcp_server_identifier": v("10.77.0.1"), "expiry": v("1796304898"),
	})
	if l.Address.String() != "10.77.0.61/22" || l.Server.String() != "10.77.0.1" || !l.Expires.Equal(time.Unix(1796304898, 0)) || exp != "1796304898" {
		t.Fatalf("lease %+v (expiry %q)", l, exp)
	}
	if l, _ := nmLease("eth0", map[string]dbus.Variant{"ip_address": v("not an address")}); l.Valid() {
		t.Fatalf("a bad ip_address gave a lease: %+v", l)
	}
	if l, _ := nmLease("eth0", nil); l.Valid() {
		t.Fatal("no options gave a lease")
	}
}
