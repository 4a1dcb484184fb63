package server

import (
	"github.com/prewarm/prewarm/imds/internal/promtext"
	"github.com/prewarm/prewarm/shared/status"
)

// stateNone is the state label of an instance that has not reported.
const stateNone = "none"

// reportStates are the states of the contract, in the agent's order.
var reportStates = []string{
	status.StateStarting, status.StateWaiting, status.StateApplying,
	status.StatePartialReady, status.StateProvisioned, status.StateFailed,
}

// fleetMetrics are the fleet's Prometheus metrics: instances by reported
// state and stale instances (counted at each scrape from the index and
// the fleet view), and the time from a publish to the guest's provisioned
// report. (Reports received by state are prewarm_imds_status_reports_total.)
type fleetMetrics struct {
	toProvisioned *promtext.Histogram
}

func newFleetMetrics(s *Server, reg *promtext.Registry) *fleetMetrics {
	reg.GaugeCollect("prewarm_imds_instances_by_state",
		`Registered instances by the state of their last report ("none": no report yet); the generation reported may be older than the one published.`,
		[]string{"state"}, func(emit func(float64, ...string)) {
			counts, _ := s.fleetCounts()
			emit(float64(counts[stateNone]), stateNone)
			for _, st := range reportStates {
				emit(float64(counts[st]), st)
			}
		})
	reg.GaugeFunc("prewarm_imds_stale_instances",
		"Instances with a published generation their guest has not settled on (partial-ready, provisioned or failed) and no report for the stale time (serve's default 5m) since the publish or its last report, whichever is later.",
		func() float64 { _, stale := s.fleetCounts(); return float64(stale) })
	return &fleetMetrics{
		toProvisioned: reg.Histogram("prewarm_imds_publish_to_provisioned_seconds",
			"Time from a publish to the guest's first provisioned report of that generation, for publishes this process saw.",
			[]float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800}),
	}
}

// fleetCounts counts the instances by the state of their last report
// (stateNone: none yet), and the stale ones.
func (s *Server) fleetCounts() (byState map[string]int, stale int) {
	now := s.opts.Now()
	byState = map[string]int{}
	s.mu.RLock()
	insts := make([]*instance, 0, len(s.byID))
	for _, inst := range s.byID {
		insts = append(insts, inst)
	}
	s.mu.RUnlock()
	for _, inst := range insts {
		sn := inst.cur.Load()
		inst.statusMu.Lock()
		last := inst.lastStatus
		inst.statusMu.Unlock()
		st := stateNone
		if last != nil {
			st = last.State
		}
		byState[st]++
		if s.fleet.info(inst.id, sn.generation, last, now).Stale {
			stale++
		}
	}
	return byState, stale
}
