package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/status"
)

// BenchmarkFleetPageRender is the cost of one render of the fleet page's
// live part (what every open page's event stream sends on a change and
// every 10 s) for a fleet of 10,000 instances, and its size. The index is
// filled through the feed directly (no store writes).
func BenchmarkFleetPageRender(b *testing.B) {
	s := newTestServer(b, Options{})
	states := append([]string{}, reportStates...)
	for i := range 10000 {
		rec := store.Record{ID: fmt.Sprintf("vm-%05d", i), Registration: store.Registration{
			Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}, HostInterface: fmt.Sprintf("vnet%d", i),
			Labels: map[string]string{"pool": "warm"},
		}, Generation: 2, Config: []byte(fmt.Sprintf(`{"hostname":"web-%d","generation":2}`, i)),
			LastStatus: &status.Report{Seq: 7, Time: status.Time{Time: time.Now()}, Generation: 2, State: states[i%len(states)]}}
		s.follow(store.Event{Type: store.EventChanged, Record: rec})
	}
	var size int
	b.ResetTimer()
	for b.Loop() {
		out, err := uiRender("fleet-live", s.fleetPage(uiFilter{}))
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "bytes/render")
}
