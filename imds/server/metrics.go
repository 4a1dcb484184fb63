package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/imds/internal/promtext"
	"github.com/prewarm/prewarm/shared/api"
)

// metrics are the server's Prometheus metrics (all prefixed prewarm_imds_),
// with the Go runtime's and the process's (promtext.RegisterRuntime),
// served in the text format at /metrics.
type metrics struct {
	reg         *promtext.Registry
	requests    *promtext.CounterVec
	parked      *promtext.GaugeVec
	parkedGuest *promtext.Gauge
	publishes   *promtext.Counter
	rejects     *promtext.CounterVec
	rateLimited *promtext.Counter
	reports     *promtext.CounterVec
	panics      *promtext.Counter
	// connsRefused counts guest connections closed at accept, by the
	// limit that refused them (MaxConnsPerSource, MaxGuestConns,
	// MaxUnknownConns: guestnet.LimitPerSource...); parkEvicted counts polls
	// answered early (MaxParkedPerInstance).
	connsRefused *promtext.CounterVec
	parkEvicted  *promtext.Counter
	peerGone     *promtext.Counter
	fleet        *fleetMetrics // fleetmetrics.go
	handler      http.Handler

	cache sync.Map // reqKey -> *promtext.Counter
	// configOK is the counter of a guest's GET config answered 200, the
	// request a guest makes most, and statusOK of its status report
	// answered 204, spared the cache's lookup.
	configOK, statusOK *promtext.Counter
	// reportsBy are reports' counters by state, in reportStates' order.
	reportsBy []*promtext.Counter
}

type reqKey struct {
	api, route string
	code       int
}

func newMetrics(s *Server) *metrics {
	reg := promtext.NewRegistry()
	promtext.RegisterRuntime(reg)
	m := &metrics{
		reg:         reg,
		requests:    reg.CounterVec("prewarm_imds_requests_total", "HTTP requests answered, by API, route and status code.", "api", "route", "code"),
		parked:      reg.GaugeVec("prewarm_imds_parked_long_polls", "Long-polls currently waiting, by API.", "api"),
		publishes:   reg.Counter("prewarm_imds_publishes_total", "Config documents published (durable)."),
		rejects:     reg.CounterVec("prewarm_imds_publish_rejects_total", "Publishes rejected as invalid, by source (api, publish-dir).", "source"),
		rateLimited: reg.Counter("prewarm_imds_rate_limited_total", "Guest requests answered 429."),
		reports:     reg.CounterVec("prewarm_imds_status_reports_total", "Status reports received, by state.", "state"),
		panics:      reg.Counter("prewarm_imds_handler_panics_total", "Handler panics recovered."),
	}
	m.connsRefused = reg.CounterVec("prewarm_imds_guest_connections_refused_total", "Guest connections closed at accept, by the limit that refused them: max-conns-per-source (too many from one source: an address, or a host interface on its listener), max-guest-conns (too many of registered sources in all), max-unknown-conns (too many of sources that match no registered instance in all).", "limit")
	for _, l := range []string{guestnet.LimitPerSource, guestnet.LimitRegistered, guestnet.LimitUnknown} {
		m.connsRefused.WithLabelValues(l)
	}
	for _, st := range reportStates {
		m.reportsBy = append(m.reportsBy, m.reports.WithLabelValues(st))
	}
	m.fleet = newFleetMetrics(s, reg)
	m.parkEvicted = reg.Counter("prewarm_imds_long_polls_evicted_total", "Parked long-polls answered early: too many parked for one instance.")
	m.peerGone = reg.Counter("prewarm_imds_long_polls_abandoned_total", "Parked long-polls whose guest closed the connection before an answer.")
	reg.GaugeFunc("prewarm_imds_instances", "Registered instances.", func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.byID))
	})
	reg.GaugeFunc("prewarm_imds_store_degraded", "1 while the shared store (etcd) is unreachable and the server serves read-only.", func() float64 {
		if s.StoreHealth() != nil {
			return 1
		}
		return 0
	})
	reg.GaugeFunc("prewarm_imds_store_writable", "0 while the embedded store cannot write (full or read-only filesystem, I/O error), else 1; /healthz then answers 503.", func() float64 {
		if s.writeHealth(context.Background()) != nil {
			return 0
		}
		return 1
	})
	m.parkedGuest = m.parked.WithLabelValues("guest")
	m.configOK = m.requests.WithLabelValues("guest", api.PathConfig, "200")
	m.statusOK = m.requests.WithLabelValues("guest", api.PathStatus, "204")
	m.handler = reg.Handler()
	return m
}

func (m *metrics) request(apiName, route string, code int) {
	if apiName == "guest" {
		switch {
		case code == http.StatusOK && route == api.PathConfig:
			m.configOK.Inc()
			return
		case code == http.StatusNoContent && route == api.PathStatus:
			m.statusOK.Inc()
			return
		}
	}
	k := reqKey{apiName, route, code}
	c, ok := m.cache.Load(k)
	if !ok {
		c, _ = m.cache.LoadOrStore(k, m.requests.WithLabelValues(apiName, route, strconv.Itoa(code)))
	}
	c.(*promtext.Counter).Inc()
}

// routeOf names a request's route with a bounded label: the admin mux's
// pattern that matched it (ServeMux sets r.Pattern on the request the
// instrumenting wrapper holds), else one of the native guest paths, else
// "other". A dialect's requests are labelled by the dialect itself.
func routeOf(r *http.Request) string {
	if p := r.Pattern; p != "" && p != "/" {
		if _, path, ok := strings.Cut(p, " "); ok {
			p = path // "GET /v1/instances/{id}" → "/v1/instances/{id}"
		}
		return strings.TrimSuffix(p, "/{$}")
	}
	switch p := r.URL.Path; p {
	case api.PathConfig, api.PathStatus, api.PathInstance:
		return p
	}
	return "other"
}

// report counts one stored report of state (a valid one).
func (m *metrics) report(state string) {
	for i, st := range reportStates {
		if st == state {
			m.reportsBy[i].Inc()
			return
		}
	}
	m.reports.WithLabelValues(state).Inc()
}
