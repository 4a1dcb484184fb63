package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// statusPage is the admin status answer, decoded on its own so that the
// test says what the wire holds.
type statusPage struct {
	InstanceID string          `json:"instanceId"`
	Reports    []status.Report `json:"reports"`
	More       bool            `json:"more"`
	Next       *uint64         `json:"next"`
}

func appendReports(t *testing.T, s *Server, id string, from, to uint64, errText string) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		r := status.Report{Seq: seq, Time: status.Time{Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)}, State: status.StateWaiting, Error: errText}
		if err := s.st.AppendStatus(context.Background(), id, r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdminStatusPages(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	appendReports(t, s, "vm-1", 1, 150, "")
	h := s.AdminHandler()
	tests := []struct {
		query          string
		first, last    uint64 // seqs of the page; 0, 0 for none
		more           bool
		next           uint64
		code           int
		errText        string
		errField, rule string
	}{
		{query: "", first: 1, last: 100, more: true, next: 100},
		{query: "?after=100", first: 101, last: 150},
		{query: "?limit=256", first: 1, last: 150},
		{query: "?limit=10&after=140", first: 141, last: 150},
		{query: "?limit=10&after=139", first: 140, last: 149, more: true, next: 149},
		{query: "?limit=1&after=150"},
		{query: "?limit=0", code: 400, errText: "limit"},
		{query: "?limit=257", code: 400, errText: "limit"},
		{query: "?limit=x", code: 400, errText: "limit"},
		{query: "?limit=-1", code: 400, errText: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rec := do(h, req{path: "/v1/instances/vm-1/status" + tt.query})
			if tt.code == 0 {
				tt.code = 200
			}
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %.200s", rec.Code, tt.code, rec.Body.String())
			}
			if tt.code != 200 {
				if e := errBody(t, rec); !strings.Contains(e.Error, tt.errText) || !strings.Contains(e.Error, "between 1 and 256") {
					t.Fatalf("error %q does not name %q and its rule", e.Error, tt.errText)
				}
				return
			}
			var p statusPage
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			n := 0
			if tt.last > 0 {
				n = int(tt.last - tt.first + 1)
			}
			if len(p.Reports) != n || (n > 0 && (p.Reports[0].Seq != tt.first || p.Reports[n-1].Seq != tt.last)) {
				t.Fatalf("page of %d reports, want %d..%d: %.200s", len(p.Reports), tt.first, tt.last, rec.Body.String())
			}
			if p.More != tt.more || (tt.more && (p.Next == nil || *p.Next != tt.next)) || (!tt.more && p.Next != nil) {
				t.Fatalf("more %v next %v, want more %v next %d", p.More, p.Next, tt.more, tt.next)
			}
		})
	}
}

// TestAdminStatusLongPollPage checks a long poll answers with one page
// when more reports than the page arrive.
func TestAdminStatusLongPollPage(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	appendReports(t, s, "vm-1", 1, 3, "")
	rec := do(s.AdminHandler(), req{path: "/v1/instances/vm-1/status?wait=true&after=1&limit=1&timeout=5"})
	var p statusPage
	if err := json.Unmarshal(rec.Body.Bytes(), &p); rec.Code != 200 || err != nil {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	if len(p.Reports) != 1 || p.Reports[0].Seq != 2 || !p.More || p.Next == nil || *p.Next != 2 {
		t.Fatalf("long poll page: %.300s", rec.Body.String())
	}
}

// TestAdminStatusLargestRead checks the largest status read: a history of
// near-limit reports answers at most the history's byte budget.
func TestAdminStatusLargestRead(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	appendReports(t, s, "vm-1", 1, api.MaxStatusHistory+10, strings.Repeat("x", status.MaxReportBytes-512))
	largest := 0
	for _, q := range []string{"", "?limit=256"} {
		rec := do(s.AdminHandler(), req{path: "/v1/instances/vm-1/status" + q})
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		largest = max(largest, rec.Body.Len())
	}
	t.Logf("largest admin status read: %d bytes", largest)
	if limit := store.MaxStatusHistoryBytes + 4096; largest > limit {
		t.Fatalf("largest admin status read: %d bytes, want at most %d", largest, limit)
	}
}

// TestStatusBoundsMatch keeps the wire contract's bounds and the store's
// the same numbers.
func TestStatusBoundsMatch(t *testing.T) {
	if api.MaxStatusHistory != store.MaxStatusHistory || api.MaxStatusHistoryBytes != store.MaxStatusHistoryBytes {
		t.Fatalf("api bounds %d reports, %d bytes; store bounds %d, %d",
			api.MaxStatusHistory, api.MaxStatusHistoryBytes, store.MaxStatusHistory, store.MaxStatusHistoryBytes)
	}
}
