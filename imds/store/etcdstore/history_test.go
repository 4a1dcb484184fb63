package etcdstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/status"
)

func tinyReport(seq uint64) status.Report {
	return status.Report{Seq: seq, Time: status.Time{Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)}, Generation: 3, State: status.StateWaiting, AgentVersion: "0.1.0"}
}

// htmlReport is a report of about 60 KiB whose error is made of '<', which
// json.Marshal would store as six bytes each.
func htmlReport(seq uint64) status.Report {
	r := tinyReport(seq)
	r.State, r.Error = status.StateFailed, strings.Repeat("<", 60<<10)
	return r
}

// bigReport is a report near status.MaxReportBytes.
func bigReport(seq uint64) status.Report {
	r := tinyReport(seq)
	r.State, r.Error = status.StateFailed, strings.Repeat("x", status.MaxReportBytes-512)
	return r
}

// storedSize is the size of r as the store keeps it: compact JSON without
// HTML escaping.
func storedSize(t testing.TB, r status.Report) int {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return b.Len() - 1
}

// historyKeys returns the count and total value size of id's status keys.
func historyKeys(t testing.TB, s *etcdstore.Store, id string) (n, size int) {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), s.Prefix()+"status/"+id+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		size += len(kv.Value)
	}
	return len(resp.Kvs), size
}

func TestStatusHistoryByteBudget(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	s := open(t, []string{m.ClientURL}, "host-a")
	if _, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	const total = 40
	for i := uint64(1); i <= total; i++ {
		if err := s.AppendStatus(ctx, "vm-1", htmlReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	size := storedSize(t, htmlReport(total))
	want := store.MaxStatusHistoryBytes / size
	h, err := s.StatusHistory(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != want || h[0].Seq != total-uint64(want)+1 || h[len(h)-1].Seq != total {
		t.Fatalf("history of %d-byte reports: len %d (want %d), seqs %d..%d (want %d..%d)",
			size, len(h), want, h[0].Seq, h[len(h)-1].Seq, total-want+1, total)
	}
	if n, b := historyKeys(t, s, "vm-1"); n != want || b > store.MaxStatusHistoryBytes {
		t.Fatalf("etcd holds %d status keys of %d bytes, want %d keys within %d bytes", n, b, want, store.MaxStatusHistoryBytes)
	}

	recs, err := s.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].LastStatus == nil || recs[0].LastStatus.Seq != total {
		t.Fatalf("last status: %+v, %v", recs, err)
	}
}

// TestStatusHistoryBoundsAnOlderHistory checks a history written before
// the byte budget (or by a control plane): 40 reports of 64 KiB are read
// back within the budget, and the next append trims them in etcd.
func TestStatusHistoryBoundsAnOlderHistory(t *testing.T) {
	m := etcdtest.Start(t)
	ctx := context.Background()
	s := open(t, []string{m.ClientURL}, "host-a")
	if _, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	const total = 40
	for i := uint64(1); i <= total; i++ {
		b, _ := json.Marshal(bigReport(i))
		if _, err := s.Client().Put(ctx, fmt.Sprintf("%sstatus/vm-1/%020d", s.Prefix(), i), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Client().Put(ctx, s.Prefix()+"statusseq/vm-1", strconv.Itoa(total)); err != nil {
		t.Fatal(err)
	}
	want := store.MaxStatusHistoryBytes / storedSize(t, bigReport(total))
	h, err := s.StatusHistory(ctx, "vm-1")
	if err != nil || len(h) != want || h[len(h)-1].Seq != total {
		t.Fatalf("older history read back: %d reports (want %d), err %v", len(h), want, err)
	}
	if err := s.AppendStatus(ctx, "vm-1", bigReport(total+1)); err != nil {
		t.Fatal(err)
	}
	if n, b := historyKeys(t, s, "vm-1"); n != want || b > store.MaxStatusHistoryBytes {
		t.Fatalf("after an append etcd holds %d status keys of %d bytes, want %d keys within %d bytes", n, b, want, store.MaxStatusHistoryBytes)
	}
	if h, err = s.StatusHistory(ctx, "vm-1"); err != nil || len(h) != want || h[len(h)-1].Seq != total+1 {
		t.Fatalf("after an append: %d reports, err %v", len(h), err)
	}
}

// BenchmarkEtcdAppendStatus reports what etcd stores per status report once
// the history is full: the keys and values of the revision each append
// makes (B/report; etcd keeps each revision until compaction), and the
// size of the history (B/history: the largest admin status read).
func BenchmarkEtcdAppendStatus(b *testing.B) {
	m := etcdtest.Start(b)
	for _, tc := range []struct {
		name      string
		fill, rep func(uint64) status.Report
	}{{"tiny", tinyReport, tinyReport}, {"64KiB", bigReport, bigReport}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			s := open(b, []string{m.ClientURL}, "host-a")
			if _, err := s.Apply(ctx, "vm-1", store.Change{Register: reg("10.0.0.1")}); err != nil {
				b.Fatal(err)
			}
			seq := uint64(0)
			for range store.MaxStatusHistory + 10 {
				seq++
				if err := s.AppendStatus(ctx, "vm-1", tc.fill(seq)); err != nil {
					b.Fatal(err)
				}
			}
			start, err := s.Client().Get(ctx, s.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				seq++
				if err := s.AppendStatus(ctx, "vm-1", tc.rep(seq)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			end, err := s.Client().Get(ctx, s.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			written := 0
			for wr := range s.Client().Watch(wctx, s.Prefix(), clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1)) {
				if err := wr.Err(); err != nil {
					b.Fatal(err)
				}
				last := int64(0)
				for _, ev := range wr.Events {
					written += len(ev.Kv.Key) + len(ev.Kv.Value)
					last = ev.Kv.ModRevision
				}
				if last >= end.Header.Revision {
					break
				}
			}
			b.ReportMetric(float64(written)/float64(b.N), "B/report")
			_, size := historyKeys(b, s, "vm-1")
			b.ReportMetric(float64(size), "B/history")
		})
	}
}
