package promtext

import (
	"runtime"
	"runtime/metrics"
	"sync"
)

// RegisterRuntime registers the Go runtime's and the process's figures the
// IMDS's tools read, under client_golang's names: go_goroutines,
// go_threads, go_info, go_memstats_{sys,heap_alloc,heap_inuse,stack_inuse}_bytes
// (from runtime/metrics, no stop-the-world ReadMemStats), and on Linux
// process_{cpu_seconds_total,resident_memory_bytes,virtual_memory_bytes,
// open_fds,max_fds,start_time_seconds} (process_linux.go).
func RegisterRuntime(r *Registry) {
	rm := &runtimeMetrics{samples: []metrics.Sample{
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}}
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 { return rm.read(0) })
	r.GaugeFunc("go_threads", "Number of OS threads created.", func() float64 {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n)
	})
	r.GaugeCollect("go_info", "Information about the Go environment.", []string{"version"}, func(emit func(float64, ...string)) {
		emit(1, runtime.Version())
	})
	r.GaugeFunc("go_memstats_sys_bytes", "Number of bytes obtained from system.", func() float64 { return rm.read(1) })
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", func() float64 { return rm.read(2) })
	r.GaugeFunc("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", func() float64 { return rm.read(2) + rm.read(3) })
	r.GaugeFunc("go_memstats_stack_inuse_bytes", "Number of bytes in use by the stack allocator.", func() float64 { return rm.read(4) })
	registerProcess(r)
}

// runtimeMetrics reads its samples once per scrape: the first read of a
// scrape refreshes them all (a scrape asks for each in turn, and a
// refresh costs microseconds).
type runtimeMetrics struct {
	mu      sync.Mutex
	samples []metrics.Sample
}

func (rm *runtimeMetrics) read(i int) float64 {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if i == 0 || i == 1 {
		metrics.Read(rm.samples)
	}
	s := rm.samples[i].Value
	if s.Kind() == metrics.KindUint64 {
		return float64(s.Uint64())
	}
	return 0
}
