package dhcp

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestLeaseTimes: the built-in client's lease time and T1 from an ACK as
// it comes off the wire: a lease of 0 s is taken as minLease (it renewed
// at once, again and again), an infinite one (0xffffffff) stays infinite,
// and a T1 missing, 0 or not shorter than the lease is half the lease.
func TestLeaseTimes(t *testing.T) {
	const inf = time.Duration(0xffffffff) * time.Second
	for _, c := range []struct {
		name      string
		opts      []dhcpv4.Option
		lease, t1 time.Duration
	}{
		{"no lease time", nil, time.Hour, 30 * time.Minute},
		{"lease 0", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(0)}, minLease, minLease / 2},
		{"lease 1 s, T1 0", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(time.Second), dhcpv4.OptRenewTimeValue(0)}, minLease, minLease / 2},
		{"lease 120 s", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(120 * time.Second)}, 120 * time.Second, 60 * time.Second},
		{"T1 given", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(120 * time.Second), dhcpv4.OptRenewTimeValue(45 * time.Second)}, 120 * time.Second, 45 * time.Second},
		{"T1 over the lease", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(120 * time.Second), dhcpv4.OptRenewTimeValue(500 * time.Second)}, 120 * time.Second, 60 * time.Second},
		{"T1 equal to the lease", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(120 * time.Second), dhcpv4.OptRenewTimeValue(120 * time.Second)}, 120 * time.Second, 60 * time.Second},
		{"infinite", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(inf), dhcpv4.OptRenewTimeValue(inf)}, inf, inf / 2},
	} {
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck)}
		for _, o := range c.opts {
			mods = append(mods, dhcpv4.WithOption(o))
		}
		m, err := dhcpv4.New(mods...)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := dhcpv4.FromBytes(m.ToBytes())
		if err != nil {
			t.Fatal(err)
		}
		lease, t1 := leaseTimes(ack)
		if lease != c.lease || t1 != c.t1 {
			t.Errorf("%s: lease %v, T1 %v; want %v, %v", c.name, lease, t1, c.lease, c.t1)
		}
		if t1 <= 0 {
			t.Errorf("%s: T1 %v: the renewal would run at once", c.name, t1)
		}
	}
}
