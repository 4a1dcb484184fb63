package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the controller's Prometheus metrics (prefix prewarm_pool_).
type metrics struct {
	reg          *prometheus.Registry
	claims       *prometheus.CounterVec
	claimSeconds *prometheus.HistogramVec
	boots        *prometheus.CounterVec
	bootSeconds  *prometheus.HistogramVec
	requests     *prometheus.CounterVec
}

func newMetrics(c *Controller) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_pool_claims_total", Help: "Claims answered, by flavor, path (warm or cold) and result (ok, failed, invalid).",
		}, []string{"flavor", "path", "result"}),
		claimSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "prewarm_pool_claim_seconds", Help: "Time from claim to provisioned, by flavor and path.",
			Buckets: []float64{0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 40, 80},
		}, []string{"flavor", "path"}),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_pool_boots_total", Help: "Warm boots ended, by flavor and result (ok: partial-ready; failed: replaced).",
		}, []string{"flavor", "result"}),
		bootSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "prewarm_pool_boot_seconds", Help: "Time from boot start to partial-ready, by flavor.",
			Buckets: []float64{5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300},
		}, []string{"flavor"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_pool_requests_total", Help: "Admin API requests, by route and status code.",
		}, []string{"route", "code"}),
	}
	m.reg.MustRegister(m.claims, m.claimSeconds, m.boots, m.bootSeconds, m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), vmCollector{c})
	return m
}

var vmDesc = prometheus.NewDesc("prewarm_pool_vms", "VMs by flavor and state (booting, warm, claiming, claimed, failed).", []string{"flavor", "state"}, nil)
var slotsDesc = prometheus.NewDesc("prewarm_pool_boot_slots_used", "Boot slots in use (cap: maxBoots).", nil, nil)

// vmCollector counts the VMs at scrape time.
type vmCollector struct{ c *Controller }

func (v vmCollector) Describe(ch chan<- *prometheus.Desc) { ch <- vmDesc; ch <- slotsDesc }

func (v vmCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range v.c.Status().Flavors {
		for state, n := range map[string]int{"booting": f.Booting, "warm": f.Warm, "claiming": f.Claiming, "claimed": f.Claimed, "failed": f.Failed} {
			ch <- prometheus.MustNewConstMetric(vmDesc, prometheus.GaugeValue, float64(n), f.Name, state)
		}
	}
	used, _, _ := v.c.boots.inUse()
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(used))
}
