// Package promtext is a small Prometheus registry that writes the text
// exposition format (version 0.0.4) of the IMDS's own metrics: counters,
// gauges, gauges read at scrape time, one histogram kind, and a few of the
// Go runtime's and the process's figures under client_golang's names.
//
// It replaces prometheus/client_golang in the IMDS, which cost the idle
// server about 2.7 MB of RSS (its protobuf model, registries and collector
// inits, and the binary pages they bring) for a dozen metrics; see
// BENCHMARKS.md (issue 15). Updates are one atomic add; a scrape formats
// every family in name order, each family's series in label order, as
// client_golang's Gather does.
package promtext

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the text exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry holds metric families by name.
type Registry struct {
	mu   sync.Mutex
	fams map[string]family
}

// family is one metric family: its HELP and TYPE lines, then its series.
type family interface {
	header() (help, typ string)
	write(w *bufio.Writer, name string)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fams: map[string]family{}} }

func (r *Registry) add(name string, f family) {
	if !validName(name) {
		panic(fmt.Sprintf("promtext: metric name %q: want [a-zA-Z_:][a-zA-Z0-9_:]*", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.fams[name]; dup {
		panic(fmt.Sprintf("promtext: metric %s registered twice", name))
	}
	r.fams[name] = f
}

func validName(s string) bool {
	for i, c := range s {
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return s != ""
}

// Counter is a monotonically increasing count.
type Counter struct{ n atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.n.Add(n) }

// Value is the count.
func (c *Counter) Value() float64 { return float64(c.n.Load()) }

// Gauge is a whole number that goes up and down (the IMDS's gauges count
// things: parked polls).
type Gauge struct{ n atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.n.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.n.Add(-1) }

// Set sets the value.
func (g *Gauge) Set(v int64) { g.n.Store(v) }

// Value is the gauge's value.
func (g *Gauge) Value() float64 { return float64(g.n.Load()) }

type valuer interface{ Value() float64 }

// single is a family of one unlabelled series.
type single struct {
	help, typ string
	v         valuer
}

func (s *single) header() (string, string) { return s.help, s.typ }
func (s *single) write(w *bufio.Writer, name string) {
	sample(w, name, "", s.v.Value())
}

// Counter registers and returns an unlabelled counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{}
	r.add(name, &single{help, "counter", c})
	return c
}

// Gauge registers and returns an unlabelled gauge.
func (r *Registry) Gauge(name, help string) *Gauge {
	g := &Gauge{}
	r.add(name, &single{help, "gauge", g})
	return g
}

type funcValue func() float64

func (f funcValue) Value() float64 { return f() }

// GaugeFunc registers a gauge whose value f returns at each scrape.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.add(name, &single{help, "gauge", funcValue(f)})
}

// CounterFunc registers a counter whose value f returns at each scrape.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.add(name, &single{help, "counter", funcValue(f)})
}

// Vec is a family of counters (CounterVec) or gauges (GaugeVec) told apart
// by label values.
type Vec[T valuer] struct {
	help, typ string
	labels    []string
	mk        func() T // a new series, at zero
	m         sync.Map // joined label values → T
	mu        sync.Mutex
	keys      []string // joined label values, for the scrape
}

// CounterVec is a counter family with labels.
type CounterVec = Vec[*Counter]

// GaugeVec is a gauge family with labels.
type GaugeVec = Vec[*Gauge]

// CounterVec registers a counter family with the label names labels.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	return addVec(r, name, help, "counter", labels, func() *Counter { return &Counter{} })
}

// GaugeVec registers a gauge family with the label names labels.
func (r *Registry) GaugeVec(name, help string, labels ...string) *GaugeVec {
	return addVec(r, name, help, "gauge", labels, func() *Gauge { return &Gauge{} })
}

func addVec[T valuer](r *Registry, name, help, typ string, labels []string, mk func() T) *Vec[T] {
	v := &Vec[T]{help: help, typ: typ, labels: labels, mk: mk}
	r.add(name, v)
	return v
}

func (v *Vec[T]) header() (string, string) { return v.help, v.typ }

// WithLabelValues returns the series of these label values (in the order
// of the family's labels), creating it at zero, so that it is exposed.
func (v *Vec[T]) WithLabelValues(values ...string) T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("promtext: %d label values for labels %v", len(values), v.labels))
	}
	k := strings.Join(values, "\xff")
	if s, ok := v.m.Load(k); ok {
		return s.(T)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.m.Load(k); ok {
		return s.(T)
	}
	s := v.mk()
	v.m.Store(k, s)
	v.keys = append(v.keys, k)
	return s
}

func (v *Vec[T]) write(w *bufio.Writer, name string) {
	v.mu.Lock()
	keys := slices.Clone(v.keys)
	v.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		s, _ := v.m.Load(k)
		sample(w, name, labelPairs(v.labels, strings.Split(k, "\xff")), s.(T).Value())
	}
}

// collected is a family whose series a function produces at each scrape.
type collected struct {
	help, typ string
	labels    []string
	collect   func(emit func(v float64, labelValues ...string))
}

func (c *collected) header() (string, string) { return c.help, c.typ }
func (c *collected) write(w *bufio.Writer, name string) {
	type series struct {
		values []string
		v      float64
	}
	var all []series
	c.collect(func(v float64, values ...string) {
		if len(values) != len(c.labels) {
			panic(fmt.Sprintf("promtext: %s: %d label values for labels %v", name, len(values), c.labels))
		}
		all = append(all, series{slices.Clone(values), v})
	})
	slices.SortFunc(all, func(a, b series) int { return slices.Compare(a.values, b.values) })
	for _, s := range all {
		sample(w, name, labelPairs(c.labels, s.values), s.v)
	}
}

// GaugeCollect registers a gauge family whose series collect emits at each
// scrape (one call of emit a series, label values in the order of labels).
func (r *Registry) GaugeCollect(name, help string, labels []string, collect func(emit func(v float64, labelValues ...string))) {
	r.add(name, &collected{help, "gauge", labels, collect})
}

// Histogram counts observations into cumulative buckets.
type Histogram struct {
	help    string
	mu      sync.Mutex
	bounds  []float64
	buckets []uint64 // per bound, not cumulative
	count   uint64
	sum     float64
}

// Histogram registers a histogram with the given upper bounds (ascending;
// +Inf is implied).
func (r *Registry) Histogram(name, help string, bounds []float64) *Histogram {
	if !slices.IsSorted(bounds) {
		panic(fmt.Sprintf("promtext: %s: buckets not ascending", name))
	}
	h := &Histogram{help: help, bounds: slices.Clone(bounds), buckets: make([]uint64, len(bounds))}
	r.add(name, h)
	return h
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // first bound ≥ v
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < len(h.buckets) {
		h.buckets[i]++
	}
	h.count++
	h.sum += v
}

// Snapshot returns the count and sum of the observations.
func (h *Histogram) Snapshot() (count uint64, sum float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count, h.sum
}

func (h *Histogram) header() (string, string) { return h.help, "histogram" }
func (h *Histogram) write(w *bufio.Writer, name string) {
	h.mu.Lock()
	buckets, count, sum := slices.Clone(h.buckets), h.count, h.sum
	h.mu.Unlock()
	var cum uint64
	for i, b := range h.bounds {
		cum += buckets[i]
		sample(w, name+"_bucket", `le="`+formatFloat(b)+`"`, float64(cum))
	}
	sample(w, name+"_bucket", `le="+Inf"`, float64(count))
	sample(w, name+"_sum", "", sum)
	sample(w, name+"_count", "", float64(count))
}

func labelPairs(names, values []string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(values[i]))
		b.WriteByte('"')
	}
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func sample(w *bufio.Writer, name, labels string, v float64) {
	w.WriteString(name)
	if labels != "" {
		w.WriteByte('{')
		w.WriteString(labels)
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Write writes every family in the text format, in name order.
func (r *Registry) Write(w *bufio.Writer) error {
	r.mu.Lock()
	names := make([]string, 0, len(r.fams))
	for n := range r.fams {
		names = append(names, n)
	}
	fams := make([]family, len(names))
	sort.Strings(names)
	for i, n := range names {
		fams[i] = r.fams[n]
	}
	r.mu.Unlock()
	for i, f := range fams {
		help, typ := f.header()
		if help != "" {
			w.WriteString("# HELP " + names[i] + " " + helpEscaper.Replace(help) + "\n")
		}
		w.WriteString("# TYPE " + names[i] + " " + typ + "\n")
		f.write(w, names[i])
	}
	return w.Flush()
}

// Handler serves the registry in the text format (GET and HEAD).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		if req.Method == http.MethodHead {
			return
		}
		bw := bufio.NewWriterSize(w, 16<<10)
		_ = r.Write(bw) // a write error is the client gone
	})
}
