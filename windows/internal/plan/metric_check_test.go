package plan

import (
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// TestCheckRouteMetrics: the contract takes a metric up to 4294967295; the
// Windows agent refuses one above 9999 before any step, naming the field.
func TestCheckRouteMetrics(t *testing.T) {
	d, err := config.Decode([]byte(`{"network":{"interfaces":[` +
		`{"mac":"52:54:00:12:34:56","routes":[{"to":"10.2.0.0/16","via":"10.1.0.254","metric":9999},{"to":"10.3.0.0/16","via":"10.1.0.254"}]},` +
		`{"mac":"52:54:00:12:34:57","routes":[{"to":"10.4.0.0/16","via":"10.1.0.254","metric":5},{"to":"10.5.0.0/16","via":"10.1.0.254","metric":10000}]}]}}`))
	if err != nil {
		t.Fatalf("the contract refused a metric of 10000: %v", err)
	}
	errs := CheckRouteMetrics(d.Network)
	if len(errs) != 1 || errs[0].Path != "network.interfaces[1].routes[1].metric" || !strings.Contains(errs[0].Reason, "is 10000; must be at most 9999 on Windows") {
		t.Fatalf("CheckRouteMetrics = %+v, want one error for network.interfaces[1].routes[1].metric", errs)
	}
	d.Network.Interfaces[1].Routes[1].Metric = 9999
	if errs := CheckRouteMetrics(d.Network); errs != nil {
		t.Errorf("metric 9999: %+v", errs)
	}
	if errs := CheckRouteMetrics(nil); errs != nil {
		t.Errorf("no network: %+v", errs)
	}
}
