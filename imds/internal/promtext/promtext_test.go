package promtext

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var initTime = time.Now()

// parse reads the registry's exposition back with Prometheus' own parser,
// which rejects anything out of the text format.
func parse(t *testing.T, r *Registry) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(bufio.NewWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, buf.String())
	}
	return buf.String(), mfs
}

func TestExpositionParses(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("a_total", "A counter.\nWith a second line and a \\ backslash.")
	cv := r.CounterVec("b_total", "Counted by label.", "api", "code")
	g := r.Gauge("c", "A gauge.")
	gv := r.GaugeVec("d", "Gauged by label.", "api")
	r.GaugeFunc("e", "Read at scrape.", func() float64 { return 2.5 })
	r.GaugeCollect("f", "Collected.", []string{"state"}, func(emit func(float64, ...string)) {
		emit(3, "zeta")
		emit(1, "alpha")
	})
	h := r.Histogram("g_seconds", "Took.", []float64{0.5, 1, 5})

	c.Add(41)
	c.Inc()
	cv.WithLabelValues("guest", "200").Inc()
	cv.WithLabelValues("guest", "200").Inc()
	cv.WithLabelValues("admin", "404").Inc()
	cv.WithLabelValues(`we"ird\`, "x\ny").Inc()
	g.Inc()
	g.Inc()
	g.Dec()
	gv.WithLabelValues("admin") // exposed at zero
	for _, v := range []float64{0.2, 0.5, 0.7, 3, 10} {
		h.Observe(v)
	}

	text, mfs := parse(t, r)
	val := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf := mfs[name]
		if mf == nil {
			t.Fatalf("no family %s in\n%s", name, text)
		}
	metric:
		for _, m := range mf.Metric {
			if len(m.Label) != len(labels) {
				continue
			}
			for _, lp := range m.Label {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
		t.Fatalf("no %s%v in\n%s", name, labels, text)
		return 0
	}
	if v := val("a_total", nil); v != 42 {
		t.Errorf("a_total = %v, want 42", v)
	}
	if mfs["a_total"].GetHelp() != "A counter.\nWith a second line and a \\ backslash." || mfs["a_total"].GetType() != dto.MetricType_COUNTER {
		t.Errorf("a_total help %q type %v", mfs["a_total"].GetHelp(), mfs["a_total"].GetType())
	}
	if v := val("b_total", map[string]string{"api": "guest", "code": "200"}); v != 2 {
		t.Errorf("b_total{guest,200} = %v, want 2", v)
	}
	if v := val("b_total", map[string]string{"api": `we"ird\`, "code": "x\ny"}); v != 1 {
		t.Errorf("escaped labels = %v, want 1", v)
	}
	if v := val("c", nil); v != 1 || mfs["c"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("c = %v (%v), want gauge 1", v, mfs["c"].GetType())
	}
	if v := val("d", map[string]string{"api": "admin"}); v != 0 {
		t.Errorf("d{admin} = %v, want 0", v)
	}
	if v := val("e", nil); v != 2.5 {
		t.Errorf("e = %v", v)
	}
	if v := val("f", map[string]string{"state": "zeta"}); v != 3 {
		t.Errorf("f{zeta} = %v", v)
	}
	hist := mfs["g_seconds"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 5 || hist.GetSampleSum() != 14.4 {
		t.Errorf("histogram count %d sum %v, want 5 and 14.4", hist.GetSampleCount(), hist.GetSampleSum())
	}
	want := []uint64{2, 3, 4} // le 0.5 (0.2 and 0.5), le 1, le 5
	for i, b := range hist.GetBucket()[:3] {
		if b.GetCumulativeCount() != want[i] {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want[i])
		}
	}
	// Families in name order, series in label order, as client_golang.
	if i, j := strings.Index(text, "\na_total "), strings.Index(text, "\nc "); i < 0 || j < i {
		t.Errorf("families out of order:\n%s", text)
	}
	if i, j := strings.Index(text, `b_total{api="admin"`), strings.Index(text, `b_total{api="guest"`); j < i {
		t.Errorf("series out of order:\n%s", text)
	}
	if i, j := strings.Index(text, `f{state="alpha"}`), strings.Index(text, `f{state="zeta"}`); i < 0 || j < i {
		t.Errorf("collected series out of order:\n%s", text)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "")
	for _, f := range []func(){
		func() { r.Gauge("x_total", "") },
		func() { r.Gauge("0bad", "") },
		func() { r.CounterVec("v_total", "", "a").WithLabelValues("1", "2") },
		func() { r.Histogram("h", "", []float64{2, 1}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

func TestRuntimeAndHandler(t *testing.T) {
	r := NewRegistry()
	RegisterRuntime(r)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	g := func(name string) float64 {
		t.Helper()
		mf := mfs[name]
		if mf == nil || len(mf.Metric) != 1 {
			t.Fatalf("no %s", name)
		}
		if mf.Metric[0].Counter != nil {
			return mf.Metric[0].Counter.GetValue()
		}
		return mf.Metric[0].Gauge.GetValue()
	}
	if n := g("go_goroutines"); n < 1 {
		t.Errorf("go_goroutines %v", n)
	}
	if h, s := g("go_memstats_heap_inuse_bytes"), g("go_memstats_sys_bytes"); h <= 0 || h > s {
		t.Errorf("heap in use %v, sys %v", h, s)
	}
	if g("go_memstats_stack_inuse_bytes") <= 0 {
		t.Error("no stack in use")
	}
	if runtime.GOOS != "linux" {
		return
	}
	if rss := g("process_resident_memory_bytes"); rss < 1<<20 {
		t.Errorf("RSS %v", rss)
	}
	if n := g("process_open_fds"); n < 3 {
		t.Errorf("open fds %v", n)
	}
	// The process started before this package's init, and not a minute
	// before it (btime is whole seconds, the start time in ticks: 1 s of
	// slack).
	if st := g("process_start_time_seconds"); st > float64(initTime.Unix())+1 || st < float64(initTime.Unix())-60 {
		t.Errorf("start time %v, this package's init at %v", st, initTime.Unix())
	}
	if g("process_cpu_seconds_total") < 0 {
		t.Error("negative cpu")
	}
	resp2, err := http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 200 || resp2.Header.Get("Content-Type") != ContentType {
		t.Errorf("HEAD: %d %q", resp2.StatusCode, resp2.Header.Get("Content-Type"))
	}
}

// BenchmarkCounterVec is the per-request cost of counting a request.
func BenchmarkCounterVec(b *testing.B) {
	r := NewRegistry()
	cv := r.CounterVec("r_total", "", "api", "route", "code")
	b.ReportAllocs()
	for b.Loop() {
		cv.WithLabelValues("guest", "/metadata/v1/config", "200").Inc()
	}
}
