package netmon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"golang.org/x/sys/unix"
)

// TestLinksBehind: a carrier change that sysfs shows but no event has
// reported yet makes LinksBehind true; once the event is handed over it is
// false again. Sysfs is a directory the test writes (the polling path
// reads the same files).
func TestLinksBehind(t *testing.T) {
	dir := t.TempDir()
	write := func(carrier, changes int) {
		d := filepath.Join(dir, "eth0")
		os.MkdirAll(d, 0o755)
		for k, v := range map[string]string{
			"ifindex": "2", "flags": "0x" + strconv.FormatInt(unix.IFF_UP, 16),
			"carrier": strconv.Itoa(carrier), "carrier_changes": strconv.Itoa(changes),
			"address": "52:54:00:00:00:02", "operstate": "up", "type": "1",
		} {
			if err := os.WriteFile(filepath.Join(d, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(1, 2)
	// The poll runs only when the test says so: a long interval, and
	// a fresh watcher for the "catches up" half.
	w := New(Options{Logger: testLogger(t), SysClassNet: dir, PollInterval: time.Hour})
	w.dial = func() (osMon, error) { return nil, errors.New("no netlink here") }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if b, err := w.LinksBehind(ctx); err != nil || b {
		t.Fatalf("before WatchLinks: behind %v, %v", b, err)
	}
	if _, err := w.WatchLinks(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := w.LinksBehind(ctx); err != nil || b {
		t.Fatalf("nothing changed: behind %v, %v", b, err)
	}
	write(0, 3) // carrier off: sysfs has it, the (rate-limited) notice not yet
	if b, err := w.LinksBehind(ctx); err != nil || !b {
		t.Fatalf("carrier off, unreported: behind %v, %v", b, err)
	}
	write(1, 4) // and back on within the rate limit
	if b, err := w.LinksBehind(ctx); err != nil || !b {
		t.Fatalf("bounce, unreported: behind %v, %v", b, err)
	}
	cancel()

	// A watcher that polls every 20 ms reports the bounce; once the event
	// is handed over, nothing is behind.
	write(1, 4)
	w2 := New(Options{Logger: testLogger(t), SysClassNet: dir, PollInterval: 20 * time.Millisecond})
	w2.dial = w.dial
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	evs, err := w2.WatchLinks(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	write(1, 6)
	expect(t, evs, want{agent.CarrierBack, "eth0"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := w2.LinksBehind(ctx2)
		if err != nil {
			t.Fatal(err)
		}
		if !b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still behind after the event was handed over")
		}
		time.Sleep(time.Millisecond)
	}
	cancel2()
	for range evs {
	}
}
