package server

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// NotifySystemd speaks sd_notify to $NOTIFY_SOCKET: READY=1 with the
// first STATUS=, a new STATUS= when the fleet changes, STOPPING=1 at the
// end.
func TestNotifySystemd(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unixgram sockets")
	}
	sock := filepath.Join(t.TempDir(), "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	read := func() string {
		t.Helper()
		pc.SetReadDeadline(time.Now().Add(time.Minute)) // a bound, not a timing assertion
		b := make([]byte, 4096)
		n, err := pc.Read(b)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(b[:n])
	}

	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.NotifySystemd(ctx) }()
	if got, want := read(), "READY=1\nSTATUS=1 instance (1 none), 0 parked polls"; got != want {
		t.Errorf("first notification %q, want %q", got, want)
	}
	mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"10.0.0.2"}})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 1, Generation: 1, State: status.StateProvisioned})
	want := "STATUS=2 instances (1 provisioned, 1 none), 0 parked polls"
	for i := 0; ; i++ {
		got := read()
		if got == want {
			break
		}
		if i == 10 || !strings.HasPrefix(got, "STATUS=") {
			t.Fatalf("notification %q; waiting for %q", got, want)
		}
	}
	cancel()
	if got := read(); got != "STOPPING=1\nSTATUS=shutting down" {
		t.Errorf("last notification %q", got)
	}
	<-done
}

func TestStatusLine(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	s := newTestServer(t, Options{Now: clock.Now, StaleAfter: time.Minute})
	if got := s.StatusLine(); got != "0 instances, 0 parked polls" {
		t.Errorf("empty: %q", got)
	}
	for _, id := range []string{"a", "b", "c"} {
		mustRegister(t, s, id, api.Registration{HostInterface: "tap-" + id})
		mustPublish(t, s, id, `{"partial":true}`)
	}
	clock.Add(2 * time.Minute)
	if got, want := s.StatusLine(), "3 instances (3 none; 3 stale), 0 parked polls"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	s.m.parkedGuest.Set(2)
	defer s.m.parkedGuest.Set(0)
	s.SetStoreHealth(errors.New("etcd unreachable"))
	defer s.SetStoreHealth(nil)
	if got, want := s.StatusLine(), "store degraded, serving read-only; 3 instances (3 none; 3 stale), 2 parked polls"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
