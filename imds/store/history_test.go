package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/prewarm/prewarm/shared/status"
)

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

// htmlReport is a report of about 60 KiB whose error is made of '<', which
// json.Marshal would store as six bytes each.
func htmlReport(seq uint64) status.Report {
	r := tinyReport(seq)
	r.State, r.Error = status.StateFailed, strings.Repeat("<", 60<<10)
	return r
}

func TestBoltStatusHistoryByteBudget(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	const total = 40
	for i := uint64(1); i <= total; i++ {
		if err := s.AppendStatus(ctx, "a", htmlReport(i)); err != nil {
			t.Fatal(err)
		}
	}
	size := storedSize(t, htmlReport(total))
	want := MaxStatusHistoryBytes / size // the newest that fit, stored compactly
	h, err := s.StatusHistory(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != want || h[0].Seq != total-uint64(want)+1 || h[len(h)-1].Seq != total {
		t.Fatalf("history of %d-byte reports: len %d (want %d), seqs %d..%d (want %d..%d)",
			size, len(h), want, h[0].Seq, h[len(h)-1].Seq, total-want+1, total)
	}
	if got := historyBytes(t, s, "a"); got > MaxStatusHistoryBytes {
		t.Fatalf("history holds %d bytes, budget %d", got, MaxStatusHistoryBytes)
	}

	// A report larger than the whole budget (the server refuses those, the
	// store does not rely on it) is kept alone: the newest always stays.
	huge := tinyReport(total + 1)
	huge.Error = strings.Repeat("x", MaxStatusHistoryBytes+1)
	if err := s.AppendStatus(ctx, "a", huge); err != nil {
		t.Fatal(err)
	}
	if h, err = s.StatusHistory(ctx, "a"); err != nil || len(h) != 1 || h[0].Seq != total+1 {
		t.Fatalf("after a huge report: %d reports, err %v", len(h), err)
	}
	recs, err := s.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].LastStatus == nil || recs[0].LastStatus.Seq != total+1 {
		t.Fatalf("last status after a huge report: %+v, %v", recs, err)
	}
	// And the next small one pushes it out.
	if err := s.AppendStatus(ctx, "a", tinyReport(total+2)); err != nil {
		t.Fatal(err)
	}
	if h, err = s.StatusHistory(ctx, "a"); err != nil || len(h) != 1 || h[0].Seq != total+2 {
		t.Fatalf("after a small report: %d reports, err %v", len(h), err)
	}
}

// historyBytes is what id's live status history holds in reports.db:
// the reports of the seqs its index keeps, read from the file.
func historyBytes(t *testing.T, s *Bolt, id string) int {
	t.Helper()
	s.idx.mu.Lock()
	seqs := slices.Clone(s.idx.inst[id].seqs)
	s.idx.mu.Unlock()
	n := 0
	err := s.reportsTx(false, func(tx *bolt.Tx) error {
		for _, seq := range seqs {
			_, data, ok := getLog(tx.Bucket(rLog), seq)
			if !ok {
				return fmt.Errorf("seq %d of %s is not in the log", seq, id)
			}
			n += len(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBoltAppendStatusWritesReportOnce checks the cost of one report once
// the history is full: bbolt writes the report once (not also a copy as the
// instance's last status, not the large reports next to it) plus a few
// B+tree pages. It measures every page a transaction allocates plus its
// meta page, so the bound is exact, not a timing.
func TestBoltAppendStatusWritesReportOnce(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		fill, rep func(uint64) status.Report
	}{{"tiny", tinyReport, tinyReport}, {"64KiB", bigReport, bigReport}, {"tiny-after-64KiB", bigReport, tinyReport}} {
		s := open(t, t.TempDir())
		if _, err := s.Apply(ctx, "a", Change{Register: &Registration{Addresses: []string{"10.0.0.1"}}}); err != nil {
			t.Fatal(err)
		}
		seq := uint64(0)
		for range MaxStatusHistory + 10 {
			seq++
			if err := s.AppendStatus(ctx, "a", tc.fill(seq)); err != nil {
				t.Fatal(err)
			}
		}
		const n = 20
		before := pageBytes(s)
		for range n {
			seq++
			if err := s.AppendStatus(ctx, "a", tc.rep(seq)); err != nil {
				t.Fatal(err)
			}
		}
		perReport := (pageBytes(s) - before) / n
		page := int64(s.db.Info().PageSize)
		size := int64(storedSize(t, tc.rep(seq)))
		// The report's own pages (rounded up), plus leaf, branch and
		// parent pages, the freelist and the meta page.
		limit := (size+page-1)/page*page + 6*page
		t.Logf("%s report (%d bytes): %d bytes written per report", tc.name, size, perReport)
		if perReport > limit {
			t.Errorf("%s report (%d bytes): %d bytes written per report, want at most %d", tc.name, size, perReport, limit)
		}
	}
}
