package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/internal/cputime"
	"github.com/prewarm/prewarm/shared/status"
)

// tinyReport is the size of a typical report: a state change with no steps.
func tinyReport(seq uint64) status.Report {
	return status.Report{Seq: seq, Time: status.Time{Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)}, Generation: 3, State: status.StateWaiting, AgentVersion: "0.1.0"}
}

// bigReport is a report near status.MaxReportBytes (a long error).
func bigReport(seq uint64) status.Report {
	r := tinyReport(seq)
	r.State, r.Error = status.StateFailed, strings.Repeat("x", status.MaxReportBytes-512)
	return r
}

// pageBytes is what bbolt has written to reports.db so far: every page a
// transaction allocates (dirty nodes, overflow, freelist) plus one meta
// page per commit.
func pageBytes(s *Bolt) int64 {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	st := s.rdb.Stats()
	return st.TxStats.GetPageAlloc() + int64(st.TxN)*int64(s.rdb.Info().PageSize)
}

// BenchmarkBoltAppendStatus reports the bytes bbolt writes per status report
// once the history is full (B/report), for tiny and near-limit reports, and
// what the history then holds (B/history: the largest admin status read).
// Numbers are in docs/protocol.md section 3.
func BenchmarkBoltAppendStatus(b *testing.B) {
	for _, tc := range []struct {
		name      string
		fill, rep func(uint64) status.Report
	}{{"tiny", tinyReport, tinyReport}, {"64KiB", bigReport, bigReport}, {"tiny-after-64KiB", bigReport, tinyReport}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := OpenBolt(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Apply(ctx, "vm-1", Change{Register: &Registration{Addresses: []string{"10.0.0.4"}}}); err != nil {
				b.Fatal(err)
			}
			seq := uint64(0)
			for range MaxStatusHistory + 10 { // a full history: every append also drops one
				seq++
				if err := s.AppendStatus(ctx, "vm-1", tc.fill(seq)); err != nil {
					b.Fatal(err)
				}
			}
			before := pageBytes(s)
			b.ResetTimer()
			for range b.N {
				seq++
				if err := s.AppendStatus(ctx, "vm-1", tc.rep(seq)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(pageBytes(s)-before)/float64(b.N), "B/report")
			h, err := s.StatusHistory(ctx, "vm-1")
			if err != nil {
				b.Fatal(err)
			}
			size := 0
			for _, r := range h {
				size += storedSize(b, r)
			}
			b.ReportMetric(float64(size), "B/history")
		})
	}
}

// BenchmarkBoltReportIngest is status reports from many instances at once
// (one goroutine each, their histories full), the group commit's case:
// reports/s, and the transactions they took (reports/tx).
func BenchmarkBoltReportIngest(b *testing.B) {
	const instances = 512
	ctx := context.Background()
	s, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, instances)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%d", i)
		if _, err := s.Apply(ctx, ids[i], Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}}}); err != nil {
			b.Fatal(err)
		}
	}
	fill := func(reports int) {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := range reports {
					if err := s.AppendStatus(ctx, id, tinyReport(uint64(seq+1))); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	fill(MaxStatusHistory)
	txs := s.rq.commits.Load()
	b.ResetTimer()
	start, cpu0 := time.Now(), cputime.Process()
	per := max(1, b.N/instances)
	fill(per)
	if cpu := cputime.Process() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(per*instances), "cpu-us/report")
	}
	b.ReportMetric(float64(per*instances)/time.Since(start).Seconds(), "reports/s")
	b.ReportMetric(float64(per*instances)/float64(s.rq.commits.Load()-txs), "reports/tx")
	if fi, err := os.Stat(s.rpath); err == nil {
		b.ReportMetric(float64(fi.Size())/float64(instances*MaxStatusHistory), "file-B/kept-report")
	}
	// The file pages mapped in the process (the test binary's own
	// included): what the store's mapping adds to RSS.
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "RssFile: %d kB", &kb); err == nil {
				b.ReportMetric(float64(kb)/1024, "rss-file-MB")
			}
		}
	}
}

// BenchmarkBoltPublishUnderReports is publishes while 512 instances post
// reports back to back (their histories full) and a Feed follows: what a
// publish waits for behind the report batches (publish-p50-ms,
// publish-p99-ms), and the reports/s meanwhile.
func BenchmarkBoltPublishUnderReports(b *testing.B) {
	const instances = 512
	ctx := context.Background()
	s, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, instances)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%d", i)
		if _, err := s.Apply(ctx, ids[i], Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Apply(ctx, "pub", Change{Register: &Registration{Addresses: []string{"10.9.0.1"}}}); err != nil {
		b.Fatal(err)
	}
	// A Feed, as the server always runs one: every change is delivered
	// under the feed's lock, which both committers take.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	last := map[string]uint64{}
	ready := make(chan struct{})
	go s.Feed(fctx, func(ev Event) {
		switch ev.Type {
		case EventResync:
			close(ready)
		case EventStatus:
			last[ev.ID] = ev.Status.Seq
		}
	})
	<-ready
	var stop atomic.Bool
	var reports atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); !stop.Load(); seq++ {
				if err := s.AppendStatus(ctx, id, tinyReport(seq)); err != nil {
					b.Error(err)
					return
				}
				reports.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second) // histories fill, batches form
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start, r0 := time.Now(), reports.Load()
	for range b.N {
		t := time.Now()
		if _, err := s.Apply(ctx, "pub", Change{Publish: func(id string, gen int64) ([]byte, error) {
			return fmt.Appendf(nil, `{"instanceId":%q,"generation":%d}`, id, gen), nil
		}}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	b.ReportMetric(float64(reports.Load()-r0)/time.Since(start).Seconds(), "reports/s")
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "publish-p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "publish-p99-ms")
}
