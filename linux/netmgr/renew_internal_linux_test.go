package netmgr

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// describe252 is a networkd 252 Link.Describe of eth0 (trimmed to what the
// renewal reads) with a DHCPv4 address: lifetime is ValidLifetimeUsec's
// value, absent for an infinite lease (as networkd writes it).
func describe252(t *testing.T, state, addr, lifetime string) *networkdLink {
	t.Helper()
	a := strings.Split(addr, ".")
	js := `{"Index":2,"Name":"eth0","AdministrativeState":"` + state + `","OperationalState":"routable","Addresses":[` +
		`{"Family":10,"Address":[254,128,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"PrefixLength":64,"ConfigSource":"foreign","ConfigState":"configured"}`
	if addr != "" {
		js += `,{"Family":2,"Address":[` + strings.Join(a, ",") + `],"PrefixLength":24,` + lifetime +
			`"ConfigSource":"DHCPv4","ConfigState":"configured","ConfigProvider":[10,77,0,1]}`
	}
	js += `]}`
	var d networkdLink
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// TestRenewalDone: an infinite lease renewed by Link.Renew is done once the
// grace has passed with it unchanged on a link networkd configures (its ACK changes
// nothing networkd describes: the renewal waited out its whole limit and
// failed); a finite one only when its lifetime moves; after a lease went
// (a DHCPNAK, a Reconfigure's new start) the next one is new.
func TestRenewalDone(t *testing.T) {
	const finite = `"ValidLifetimeUsec":5000000000,`
	t0 := time.Now()
	after := t0.Add(infiniteRenewGrace)
	for _, tc := range []struct {
		name        string
		before      *networkdLink
		reconfigure bool
		seen        []*networkdLink // Describes in order, the last one at now
		now         time.Time
		want        bool
	}{
		{"infinite, unchanged, in the grace", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", "")}, t0, false},
		{"infinite, unchanged, after the grace", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", "")}, after, true},
		{"infinite as all ones", describe252(t, "configured", "10.77.0.50", `"ValidLifetimeUsec":18446744073709551615,`), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", `"ValidLifetimeUsec":18446744073709551615,`)}, after, true},
		{"infinite, link still configuring after the grace (networkd 252 after a Reconfigure)", describe252(t, "configuring", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configuring", "10.77.0.50", "")}, after, true},
		{"infinite, link failed after the grace", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "failed", "10.77.0.50", "")}, after, false},
		{"infinite, moved at once", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.51", "")}, t0, true},
		{"infinite, NAKed: gone", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configuring", "", "")}, after, false},
		{"infinite, NAKed: gone, then the same address again is the new lease", describe252(t, "configured", "10.77.0.50", ""), false,
			[]*networkdLink{describe252(t, "configuring", "", ""), describe252(t, "configured", "10.77.0.50", "")}, t0, true},
		{"Reconfigure: gone, then the same finite lease again", describe252(t, "configured", "10.77.0.50", finite), true,
			[]*networkdLink{describe252(t, "configuring", "", ""), describe252(t, "configured", "10.77.0.50", finite)}, t0, true},
		{"infinite by Reconfigure: waits for a change", describe252(t, "configured", "10.77.0.50", ""), true,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", "")}, after, false},
		{"finite, unchanged", describe252(t, "configured", "10.77.0.50", finite), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", finite)}, after, false},
		{"finite, lifetime moved", describe252(t, "configured", "10.77.0.50", finite), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", `"ValidLifetimeUsec":5100000000,`)}, t0, true},
		{"finite to infinite", describe252(t, "configured", "10.77.0.50", finite), false,
			[]*networkdLink{describe252(t, "configured", "10.77.0.50", "")}, t0, true},
	} {
		old := tc.before.lease()
		r := renewal{old: old, infinite: !tc.reconfigure && old.infinite(), grace: after}
		var got bool
		for i, d := range tc.seen {
			now := t0
			if i == len(tc.seen)-1 {
				now = tc.now
			}
			got = r.done(d, now)
		}
		if got != tc.want {
			t.Errorf("%s: done = %v, want %v", tc.name, got, tc.want)
		}
	}
}
