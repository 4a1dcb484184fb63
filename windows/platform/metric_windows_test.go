package platform

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

// TestForwardRowMetric: a route's metric is the row's, and a route without
// one gets offset 0, a value Windows documents (the interface metric
// alone), not the invalid one InitializeIpForwardEntry leaves. The
// interface metric is not in the row: Windows adds it when it compares
// routes. Changes nothing, so it runs under Wine.
func TestForwardRowMetric(t *testing.T) {
	a := adapter{Index: 7, LUID: 0x1234}
	to, via := netip.MustParsePrefix("10.2.0.0/16"), netip.MustParseAddr("10.1.0.254")
	if r := forwardRow(a, plan.Route{To: to, Via: via, Metric: 250}); r.Metric != 250 {
		t.Errorf("row metric %d, want 250", r.Metric)
	}
	var fresh windows.MibIpForwardRow2
	winapi.InitializeIpForwardEntry(&fresh)
	t.Logf("InitializeIpForwardEntry's metric: %#x", fresh.Metric)
	if r := forwardRow(a, plan.Route{To: to, Via: via}); r.Metric != 0 {
		t.Errorf("row metric %#x without one in the document, want 0", r.Metric)
	}
}
