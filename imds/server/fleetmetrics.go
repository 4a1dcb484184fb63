package server

import (
	"github.com/prometheus/client_golang/prometheus"

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
	s             *Server
	byState       *prometheus.Desc
	stale         *prometheus.Desc
	toProvisioned prometheus.Histogram
}

func newFleetMetrics(s *Server) *fleetMetrics {
	return &fleetMetrics{
		s: s,
		byState: prometheus.NewDesc("prewarm_imds_instances_by_state",
			`Registered instances by the state of their last report ("none": no report yet); the generation reported may be older than the one published.`,
			[]string{"state"}, nil),
		stale: prometheus.NewDesc("prewarm_imds_stale_instances",
			"Instances with a published generation their guest has not settled on (partial-ready, provisioned or failed) and no report for the stale time (serve's default 5m) since the publish or its last report, whichever is later.",
			nil, nil),
		toProvisioned: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "prewarm_imds_publish_to_provisioned_seconds",
			Help:    "Time from a publish to the guest's first provisioned report of that generation, for publishes this process saw.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}),
	}
}

// Describe implements prometheus.Collector.
func (fm *fleetMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- fm.byState
	ch <- fm.stale
	fm.toProvisioned.Describe(ch)
}

// Collect implements prometheus.Collector.
func (fm *fleetMetrics) Collect(ch chan<- prometheus.Metric) {
	counts, stale := fm.s.fleetCounts()
	ch <- prometheus.MustNewConstMetric(fm.byState, prometheus.GaugeValue, float64(counts[stateNone]), stateNone)
	for _, st := range reportStates {
		ch <- prometheus.MustNewConstMetric(fm.byState, prometheus.GaugeValue, float64(counts[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(fm.stale, prometheus.GaugeValue, float64(stale))
	fm.toProvisioned.Collect(ch)
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
