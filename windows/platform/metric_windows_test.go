package platform

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

// TestForwardRowMetric: a route's metric is the row's, and a route without
// one keeps the value InitializeIpForwardEntry gives a new row (Windows'
// default then applies). The interface metric is not in the row: Windows
// adds it when it compares routes. Changes nothing, so it runs under Wine.
func TestForwardRowMetric(t *testing.T) {
	a := adapter{Index: 7, LUID: 0x1234}
	to, via := netip.MustParsePrefix("10.2.0.0/16"), netip.MustParseAddr("10.1.0.254")
	if r := forwardRow(a, plan.Route{To: to, Via: via, Metric: 250}); r.Metric != 250 {
		t.Errorf("row metric %d, want 250", r.Metric)
	}
	var fresh windows.MibIpForwardRow2
	winapi.InitializeIpForwardEntry(&fresh)
	if r := forwardRow(a, plan.Route{To: to, Via: via}); r.Metric != fresh.Metric {
		t.Errorf("row metric %d without one in the document, want InitializeIpForwardEntry's %d", r.Metric, fresh.Metric)
	}
}
