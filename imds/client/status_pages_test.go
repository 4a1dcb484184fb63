package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// TestClientStatusFollowsPages checks Status returns every report past
// after, following the server's pages, and that a wait still waits.
func TestClientStatusFollowsPages(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := server.New(server.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	var requests atomic.Int32
	admin := s.AdminHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status") {
			requests.Add(1)
		}
		admin.ServeHTTP(w, r)
	}))
	defer ts.Close()
	ctx := context.Background()
	c := client.NewHTTP(ts.URL)
	if _, err := c.Register(ctx, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	const total = api.MaxStatusHistory + 10 // the store keeps the newest 256
	for seq := uint64(1); seq <= total; seq++ {
		r := status.Report{Seq: seq, Time: status.Time{Time: time.Now()}, State: status.StateWaiting}
		if err := st.AppendStatus(ctx, "vm-1", r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		after       uint64
		first, last uint64
	}{{0, 11, total}, {200, 201, total}, {total - 1, total, total}} {
		requests.Store(0)
		h, err := c.Status(ctx, "vm-1", tc.after, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := int(tc.last - tc.first + 1)
		if len(h.Reports) != n || h.Reports[0].Seq != tc.first || h.Reports[n-1].Seq != tc.last || h.More || h.Next != 0 {
			t.Fatalf("after %d: %d reports (want %d..%d), more %v", tc.after, len(h.Reports), tc.first, tc.last, h.More)
		}
		for i := 1; i < n; i++ {
			if h.Reports[i].Seq != h.Reports[i-1].Seq+1 {
				t.Fatalf("after %d: seq %d follows %d", tc.after, h.Reports[i].Seq, h.Reports[i-1].Seq)
			}
		}
		if want := (n + api.DefaultStatusPage - 1) / api.DefaultStatusPage; int(requests.Load()) != want {
			t.Fatalf("after %d: %d reports in %d requests, want %d (one a page)", tc.after, n, requests.Load(), want)
		}
	}
	if _, err := c.Status(ctx, "vm-1", total, true, 50*time.Millisecond); !errors.Is(err, client.ErrNotModified) {
		t.Fatalf("status wait: %v", err)
	}
}

// TestClientStatusRefusesABadCursor checks Status stops, with an error,
// when a server's next does not move forward, instead of asking forever.
func TestClientStatusRefusesABadCursor(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.ContentTypeJSON)
		w.Write([]byte(`{"instanceId":"vm-1","reports":[{"seq":5,"time":"2026-12-03T08:00:00Z","state":"waiting"}],"more":true,"next":5}`))
	}))
	defer ts.Close()
	_, err := client.NewHTTP(ts.URL).Status(context.Background(), "vm-1", 5, false, 0)
	if err == nil || !strings.Contains(err.Error(), "next") {
		t.Fatalf("a cursor that does not advance: %v", err)
	}
}
