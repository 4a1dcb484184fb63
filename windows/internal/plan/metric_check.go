package plan

import (
	"fmt"

	"github.com/prewarm/prewarm/shared/config"
)

// MaxRouteMetric is the largest route metric Windows takes (route add,
// New-NetRoute, netsh). The document's contract takes Linux's 32-bit
// priority; the Windows agent refuses a larger metric before any step.
const MaxRouteMetric = 9999

// routeMetricRule is why a routes[].metric above MaxRouteMetric is refused.
var routeMetricRule = fmt.Sprintf("must be at most %d on Windows (its route metric range is 1 to %d; omit the field for the OS default metric)", MaxRouteMetric, MaxRouteMetric)

// CheckRouteMetrics returns, for the agent's check before it applies
// anything, one field error for each route whose metric Windows cannot
// take.
func CheckRouteMetrics(n *config.Network) []config.FieldError {
	if n == nil {
		return nil
	}
	var out []config.FieldError
	for i, in := range n.Interfaces {
		for j, r := range in.Routes {
			if r.Metric > MaxRouteMetric {
				out = append(out, config.FieldError{
					Path:   fmt.Sprintf("network.interfaces[%d].routes[%d].metric", i, j),
					Reason: fmt.Sprintf("is %d; %s", r.Metric, routeMetricRule),
				})
			}
		}
	}
	return out
}
