package timezone

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/tzmap"
)

// Setter implements agent.TimezoneSetter with tzutil.
type Setter struct {
	Runner run.Runner
	Log    *slog.Logger
}

// ApplyTimezone sets the Windows time zone that corresponds to zone.
func (s Setter) ApplyTimezone(ctx context.Context, zone string) (agent.StepResult, error) {
	var res plan.Result
	id, err := tzmap.ToWindows(zone)
	if err != nil {
		return res.StepResult(), fmt.Errorf("set timezone %q: %w", zone, err)
	}
	out, err := s.Runner.Run(ctx, run.Cmd{Name: "tzutil", Args: []string{"/g"}})
	if err != nil {
		return res.StepResult(), fmt.Errorf("read current timezone: %w", err)
	}
	if strings.TrimSpace(string(out)) == id {
		return res.StepResult(), nil
	}
	// A current zone with daylight saving off (tzutil prints it with the
	// suffix "_dstoff") differs too:
	// setting the plain ID turns daylight saving back on, as the zone has it.
	if _, err := s.Runner.Run(ctx, run.Cmd{Name: "tzutil", Args: []string{"/s", id}}); err != nil {
		return res.StepResult(), fmt.Errorf("set timezone %q (%s): %w", zone, id, err)
	}
	if s.Log != nil {
		s.Log.Info("timezone set", "zone", zone, "windows", id)
	}
	res.Did(fmt.Sprintf("set time zone to %s (%s)", id, zone), false)
	return res.StepResult(), nil
}
