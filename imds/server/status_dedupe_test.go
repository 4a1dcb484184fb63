package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// slowAppendStore makes AppendStatus take a while, as a remote store
// does, so that concurrent reports overlap in it.
type slowAppendStore struct {
	store.Store
}

func (f *slowAppendStore) AppendStatus(ctx context.Context, id string, r status.Report) error {
	time.Sleep(50 * time.Millisecond)
	if err := ctx.Err(); err != nil {
		return err // as a remote store would: the request was cancelled
	}
	return f.Store.AppendStatus(ctx, id, r)
}

// Copies of one report sent at the same time (an agent's retry racing its
// first attempt) are stored once.
func TestConcurrentDuplicateReportsStoredOnce(t *testing.T) {
	b := openBolt(t)
	s := newTestServer(t, Options{Store: &slowAppendStore{Store: b}})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	h := s.GuestHandler()
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = do(h, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: report}).Code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 204 {
			t.Fatalf("report %d: status %d", i, c)
		}
	}
	hist, err := b.StatusHistory(context.Background(), "vm-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 {
		t.Fatalf("%d copies of one report stored, want 1", len(hist))
	}
}
