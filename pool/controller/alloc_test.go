package controller

import (
	"net/netip"
	"testing"
)

// TestAllocIPRoundRobin: a freed address is not handed out again before
// the reserved range wraps (libvirt's dnsmasq keeps the old MAC's lease and
// would not give it to the new VM), and the range wraps to addresses freed
// long ago.
func TestAllocIPRoundRobin(t *testing.T) {
	c := New(testConfig(t, 0), nil, nil, Options{})
	a1, err := c.allocIP("pool", "52:54:00:00:00:01", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := c.allocIP("pool", "52:54:00:00:00:02", netip.Addr{})
	c.freeIP("pool", a1.String())
	a3, _ := c.allocIP("pool", "52:54:00:00:00:03", netip.Addr{})
	if a3 == a1 || a3 == a2 {
		t.Fatalf("allocations %s, %s, then %s after freeing %s: a just-freed address came back", a1, a2, a3, a1)
	}
	if want := a2.Next(); a3 != want {
		t.Errorf("third allocation %s, want %s (the next one)", a3, want)
	}
	// Take the rest of the range: the allocation wraps and finds a1.
	var last netip.Addr
	for i := 0; ; i++ {
		a, err := c.allocIP("pool", "52:54:00:00:01:00", netip.Addr{})
		if err != nil {
			break
		}
		last = a
		if i > 1000 {
			t.Fatal("allocIP never ran out")
		}
	}
	if last != a1 {
		t.Errorf("the last address before the range ran out is %s, want %s (freed first, reused last)", last, a1)
	}
}
