package netmon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/linktrack"
	"github.com/prewarm/prewarm/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// TestLinksBehind: a carrier change that sysfs shows but no event has
// reported yet makes LinksBehind true, and so does an event the agent has
// received but not yet said it holds (Handled); after that it is false
// again. Sysfs is a directory the test writes (the polling path reads the
// same files; each is replaced by a rename, so a poll never reads one
// half written).
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
			tmp := filepath.Join(d, "."+k)
			if err := os.WriteFile(tmp, []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(d, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(1, 2)
	// The poll runs only when the test says so: a long interval, and
	// a fresh watcher for the "catches up" half.
	var logs syncbuf.Buffer
	w := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), SysClassNet: dir, PollInterval: time.Hour})
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
	// The debug line names what the kernel said at each check: the
	// evidence e2e TestVM reads from the guest's console.
	for _, want := range []string{
		`msg="links checked" component=netmon behind=false undelivered=0 links="eth0:changes=2:up=true"`,
		`msg="links checked" component=netmon behind=true undelivered=0 links="eth0:changes=3:up=false"`,
		`msg="links checked" component=netmon behind=true undelivered=0 links="eth0:changes=4:up=true"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no debug line %s in:\n%s", want, logs.String())
		}
	}
	cancel()

	// A watcher that polls every 20 ms reports the bounce; once the agent
	// says it holds the event, nothing is behind.
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
	var ev agent.LinkEvent
	select {
	case ev = <-evs:
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the bounce")
	}
	if ev.Kind != agent.CarrierBack || ev.Interface != "eth0" || ev.Handled == nil {
		t.Fatalf("event %s %s (Handled set: %v), want carrier-back eth0 with Handled", ev.Kind, ev.Interface, ev.Handled != nil)
	}
	// Received, but the agent has not said it holds it: still behind
	// (an outcome decided now would slip past the event).
	if b, err := w2.LinksBehind(ctx2); err != nil || !b {
		t.Fatalf("event received, not handled: behind %v, %v", b, err)
	}
	ev.Handled()
	if b, err := w2.LinksBehind(ctx2); err != nil || b {
		t.Fatalf("event handled: behind %v, %v", b, err)
	}
	cancel2()
	for range evs {
	}
}

// TestLinksBehindAfterCoalescedStorm: a storm larger than the queue holds
// is coalesced as it is queued (one receive, one push); once the agent has
// taken and handled what is left, nothing is behind (a count of events made would
// stay above zero for the ones coalesced away, and hold every later
// outcome back).
func TestLinksBehindAfterCoalescedStorm(t *testing.T) {
	ch := make(chan recv, 1)
	last := eth0
	w := New(Options{Logger: testLogger(t)})
	first := true
	w.dial = func() (osMon, error) {
		return &nlMon{c: &fakeConn{ch: ch, closed: make(chan struct{})}, dump: func() ([]netlink.Message, error) {
			if first {
				first = false
				return msgs(lo, eth0), nil
			}
			return msgs(lo, last), nil
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := w.WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var storm []link
	for i := range 2 * linktrack.MaxQueued {
		l := eth0
		l.changes = uint32(3 + i)
		l.carrier = i%2 == 1
		storm = append(storm, l)
	}
	last = storm[len(storm)-1]
	ch <- recv{msgs: msgs(storm...)}
	// Let the storm (one receive, so one push) be queued before anything
	// is read.
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := w.q.Len() + w.inHand
		w.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the storm was never queued")
		}
		time.Sleep(time.Millisecond)
	}
	got := 0
	for {
		select {
		case e := <-evs:
			got++
			e.Handled()
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if got == 0 || got >= len(storm) {
		t.Fatalf("%d events of a %d-change storm reached the agent, want some, coalesced", got, len(storm))
	}
	if b, err := w.LinksBehind(ctx); err != nil || b {
		t.Fatalf("every event taken and handled: behind %v, %v", b, err)
	}
}

// TestOneWatchAtATime: a second WatchLinks while one runs is refused (its
// events would share the running watch's count); once the first watch's
// channel closed, a new one starts, and an event of the old watch handled
// late leaves the new watch's count alone.
func TestOneWatchAtATime(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "eth0")
	os.MkdirAll(d, 0o755)
	for k, v := range map[string]string{
		"ifindex": "2", "flags": "0x" + strconv.FormatInt(unix.IFF_UP, 16),
		"carrier": "1", "carrier_changes": "2",
		"address": "52:54:00:00:00:02", "operstate": "up", "type": "1",
	} {
		if err := os.WriteFile(filepath.Join(d, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := New(Options{Logger: testLogger(t), SysClassNet: dir, PollInterval: time.Hour})
	w.dial = func() (osMon, error) { return nil, errors.New("no netlink here") }

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	evs1, err := w.WatchLinks(ctx1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WatchLinks(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second WatchLinks while the first runs: %v, want refused", err)
	}
	// An event the first watch handed over, not yet handled.
	stale := w.handledOnce(w.watch)
	w.mu.Lock()
	w.inHand++
	w.mu.Unlock()
	cancel1()
	for range evs1 {
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	evs2, err := w.WatchLinks(ctx2)
	if err != nil {
		t.Fatalf("WatchLinks after the first watch ended: %v", err)
	}
	// The new watch has an event in hand; the old one's late Handled must
	// not take it out.
	w.mu.Lock()
	w.inHand++
	w.mu.Unlock()
	stale()
	if b, err := w.LinksBehind(ctx2); err != nil || !b {
		t.Fatalf("new watch's event in hand, old watch's handled: behind %v, %v (want true)", b, err)
	}
	cancel2()
	for range evs2 {
	}
}
