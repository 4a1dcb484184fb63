package dhcp

// ROOT BENCHMARKS (see the report in linux/BENCHMARKS.md):
//
//	go test -run '^$' -bench 'HostLinkUpToLease|QuickBounce' -benchtime 10x ./linux/dhcp/
//	go test -run '^$' -bench 'FlapStorm' -benchtime 1x ./linux/dhcp/

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
)

// BenchmarkHostLinkUpToLease measures, per client, the time from the host
// setting its end of the veth up to the guest holding a renewed lease: link
// event, detection, renewal, address read back. The link stays down for
// 1.1 s after a quiet second, so the kernel reports the DOWN and the UP is
// an urgent link event, as after a real outage.
func BenchmarkHostLinkUpToLease(b *testing.B) {
	benchLinkUp(b, 1100*time.Millisecond)
}

// BenchmarkQuickBounceToLease is the same with a 20 ms bounce: the kernel's
// linkwatch rate limit (one non-urgent event a second) holds the DOWN, so
// the guest learns of the bounce only from one later message with the
// carrier up and the carrier-change counter up by 2. Its latency is the
// kernel's, not the clients'.
func BenchmarkQuickBounceToLease(b *testing.B) {
	benchLinkUp(b, 20*time.Millisecond)
}

func benchLinkUp(b *testing.B, down time.Duration) {
	netlab.RequireRoot(b)
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			if c.cmd != "" {
				netlab.Require(b, c.cmd)
			}
			p := netlab.NewPair(b)
			p.StartDnsmasq(b, "10.77.0.50")
			g := p.StartGuest(b, "TestGuestDHCP", "PWL_CLIENT="+c.name)
			g.Expect("READY", 30*time.Second)
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				if down > time.Second {
					time.Sleep(time.Second)
				}
				p.HostLink(b, "down")
				time.Sleep(down)
				start := time.Now()
				p.HostLink(b, "up")
				got := g.Expect("RENEWED", 30*time.Second)
				lat = append(lat, time.Since(start))
				if !strings.Contains(got, "10.77.0.50/24") || !strings.Contains(got, fmt.Sprintf("n=%d ", i+1)) {
					b.Fatalf("flap %d: %s", i+1, got)
				}
				time.Sleep(50 * time.Millisecond)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
			g.Wait()
		})
	}
}

// BenchmarkFlapStorm bounces the host end 50 times in 5 s, after re-mapping
// the guest's reservation; the guest debounces carrier-back events (the
// agent's job; here 1.5 s of quiet, longer than the kernel's one-a-second
// linkwatch rate limit, which spreads a storm's events a second apart) and
// renews. It reports the renewals during the storm and after it ends (want
// at most 2 after), and checks the final lease is the new address.
func BenchmarkFlapStorm(b *testing.B) {
	netlab.RequireRoot(b)
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			if c.cmd != "" {
				netlab.Require(b, c.cmd)
			}
			for range b.N {
				p := netlab.NewPair(b)
				d := p.StartDnsmasq(b, "10.77.0.50")
				g := p.StartGuest(b, "TestGuestDHCP", "PWL_CLIENT="+c.name, "PWL_DEBOUNCE_MS=1500")
				g.Expect("READY", 30*time.Second)
				p.Reserve(b, d, "10.77.0.61")
				start := time.Now()
				for range 50 {
					p.HostLink(b, "down")
					time.Sleep(48 * time.Millisecond)
					p.HostLink(b, "up")
					time.Sleep(48 * time.Millisecond)
				}
				storm := time.Since(start)
				during := g.Collect("RENEWED", 10*time.Millisecond, time.Second)
				lines := g.Collect("RENEWED", 3*time.Second, 30*time.Second)
				b.ReportMetric(float64(len(during)), "renewals-during")
				b.ReportMetric(float64(len(lines)), "renewals-after")
				b.ReportMetric(storm.Seconds(), "storm-s")
				if len(lines) == 0 || len(lines) > 2 {
					b.Fatalf("%d renewals after the storm, want 1 or 2: %q (during: %q)", len(lines), lines, during)
				}
				if last := lines[len(lines)-1]; !strings.Contains(last, "addrs=[10.77.0.61/24]") {
					b.Fatalf("lease after the storm: %s", last)
				}
				g.Wait()
			}
		})
	}
}
