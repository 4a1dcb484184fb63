package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/shared/api"
)

// metrics are the server's Prometheus metrics (all prefixed prewarm_imds_).
type metrics struct {
	requests    *prometheus.CounterVec
	parked      *prometheus.GaugeVec
	parkedGuest prometheus.Gauge
	publishes   prometheus.Counter
	rejects     *prometheus.CounterVec
	rateLimited prometheus.Counter
	reports     *prometheus.CounterVec
	panics      prometheus.Counter
	// connsRefused counts guest connections closed at accept, by the
	// limit that refused them (MaxConnsPerSource, MaxGuestConns,
	// MaxUnknownConns: guestnet.LimitPerSource...); parkEvicted counts polls
	// answered early (MaxParkedPerInstance).
	connsRefused *prometheus.CounterVec
	parkEvicted  prometheus.Counter
	peerGone     prometheus.Counter
	fleet        *fleetMetrics // fleetmetrics.go
	handler      http.Handler

	cache sync.Map // reqKey -> prometheus.Counter
}

type reqKey struct {
	api, route string
	code       int
}

func newMetrics(reg prometheus.Registerer, gat prometheus.Gatherer, s *Server) (*metrics, error) {
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gat = r, r
		if err := r.Register(collectors.NewGoCollector()); err != nil {
			return nil, err
		}
		if err := r.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	} else if gat == nil {
		gat = prometheus.DefaultGatherer
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_imds_requests_total", Help: "HTTP requests answered, by API, route and status code.",
		}, []string{"api", "route", "code"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "prewarm_imds_parked_long_polls", Help: "Long-polls currently waiting, by API.",
		}, []string{"api"}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prewarm_imds_publishes_total", Help: "Config documents published (durable).",
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_imds_publish_rejects_total", Help: "Publishes rejected as invalid, by source (api, publish-dir).",
		}, []string{"source"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prewarm_imds_rate_limited_total", Help: "Guest requests answered 429.",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prewarm_imds_status_reports_total", Help: "Status reports received, by state.",
		}, []string{"state"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "prewarm_imds_handler_panics_total", Help: "Handler panics recovered.",
		}),
	}
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "prewarm_imds_guest_connections_refused_total", Help: "Guest connections closed at accept, by the limit that refused them: max-conns-per-source (too many from one source: an address, or a host interface on its listener), max-guest-conns (too many of registered sources in all), max-unknown-conns (too many of sources that match no registered instance in all).",
	}, []string{"limit"})
	for _, l := range []string{guestnet.LimitPerSource, guestnet.LimitRegistered, guestnet.LimitUnknown} {
		m.connsRefused.WithLabelValues(l)
	}
	for _, st := range reportStates {
		m.reports.WithLabelValues(st)
	}
	m.fleet = newFleetMetrics(s)
	m.parkEvicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "prewarm_imds_long_polls_evicted_total", Help: "Parked long-polls answered early: too many parked for one instance.",
	})
	m.peerGone = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "prewarm_imds_long_polls_abandoned_total", Help: "Parked long-polls whose guest closed the connection before an answer.",
	})
	instances := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prewarm_imds_instances", Help: "Registered instances.",
	}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.byID))
	})
	degraded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prewarm_imds_store_degraded", Help: "1 while the shared store (etcd) is unreachable and the server serves read-only.",
	}, func() float64 {
		if s.StoreHealth() != nil {
			return 1
		}
		return 0
	})
	writable := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prewarm_imds_store_writable", Help: "0 while the embedded store cannot write (full or read-only filesystem, I/O error), else 1; /healthz then answers 503.",
	}, func() float64 {
		if s.writeHealth(context.Background()) != nil {
			return 0
		}
		return 1
	})
	for _, c := range []prometheus.Collector{degraded, writable, m.requests, m.parked, m.publishes, m.rejects, m.rateLimited, m.reports, m.panics, m.connsRefused, m.parkEvicted, m.peerGone, instances, m.fleet} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.parkedGuest = m.parked.WithLabelValues("guest")
	m.handler = promhttp.HandlerFor(gat, promhttp.HandlerOpts{})
	return m, nil
}

func (m *metrics) request(api, route string, code int) {
	k := reqKey{api, route, code}
	c, ok := m.cache.Load(k)
	if !ok {
		c, _ = m.cache.LoadOrStore(k, m.requests.WithLabelValues(api, route, strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
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
