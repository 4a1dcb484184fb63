package netmon

// ROOT TEST: TestWatcherInNetns builds two network namespaces joined by a
// veth pair and runs the watcher in the guest one (this binary re-executed
// under `ip netns exec`); it never touches the machine's interfaces.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/nl"
)

func TestWatcherInNetns(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	p := netlab.NewPair(t)
	g := p.StartGuest(t, "TestGuestWatcher")
	g.Expect("READY", 20*time.Second)
	// A host-side bounce: the guest sees the carrier go and come back (or,
	// within the kernel's rate limit, one message with the counter up).
	p.HostLink(t, "down")
	time.Sleep(20 * time.Millisecond)
	p.HostLink(t, "up")
	if got := g.Expect("EVENT carrier-back eth0", 10*time.Second); !strings.Contains(got, "changes=") {
		t.Fatal(got)
	}
	// A slow bounce (after a quiet second) shows both edges.
	time.Sleep(1100 * time.Millisecond)
	p.HostLink(t, "down")
	g.Expect("EVENT carrier-lost eth0", 10*time.Second)
	time.Sleep(1100 * time.Millisecond)
	p.HostLink(t, "up")
	g.Expect("EVENT carrier-back eth0", 10*time.Second)
	// Interfaces appearing and disappearing in the guest.
	g.Send("add")
	g.Expect("EVENT added vx7a", 10*time.Second)
	g.Send("del")
	g.Expect("EVENT removed vx7a", 10*time.Second)
	g.Wait()
}

func TestGuestWatcher(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestWatcherInNetns; runs inside a test namespace")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := New(Options{Logger: testLogger(t)}).WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("PWL: READY")
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	for {
		select {
		case e := <-evs:
			fmt.Printf("PWL: EVENT %s %s changes=%d\n", e.Kind, e.Interface, e.CarrierChanges)
			if e.Kind == agent.LinkAdded && e.MAC == "" {
				t.Errorf("added %s without a MAC", e.Interface)
			}
		case c, ok := <-cmds:
			if !ok {
				return
			}
			var args []string
			switch c {
			case "add":
				args = []string{"link", "add", "vx7a", "type", "veth", "peer", "name", "vx7b"}
			case "del":
				args = []string{"link", "del", "vx7a"}
			}
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
	}
}

// TestWatcherSeedsPendingOperstate is the boot case on a real kernel: the
// host end is bounced twice, so that the kernel's link watch, which ran
// for the first bounce, holds the second one back for up to a second, and
// the guest's eth0 has its carrier on and its operational state still
// down; a watch that begins then must make no event when the operational
// state catches up (the carrier and its change counter stay the same).
func TestWatcherSeedsPendingOperstate(t *testing.T) {
	if netlab.InGuest() {
		t.Skip("host side only")
	}
	p := netlab.NewPair(t)
	g := p.StartGuest(t, "TestGuestWatcherPending")
	g.Expect("READY", 20*time.Second)
	for attempt := 1; attempt <= 5; attempt++ {
		for range 2 {
			p.HostLink(t, "down")
			p.HostLink(t, "up")
		}
		g.Send("watch")
		seed := g.Expect("SEED", 10*time.Second)
		res := g.Expect("RESULT", 10*time.Second)
		if !strings.Contains(seed, "pending=true") {
			t.Logf("attempt %d: the watch began after the link watch ran (%s); again", attempt, seed)
			time.Sleep(1500 * time.Millisecond) // out of the link watch's second, for the next attempt
			continue
		}
		t.Logf("attempt %d: %s; %s", attempt, seed, res)
		if !strings.Contains(res, "settled=true") {
			t.Fatalf("the operational state did not catch up within the wait: %s", res)
		}
		if !strings.Contains(res, "events=[]") {
			t.Fatalf("events for an operational state catching up, carrier and counter unchanged: %s", res)
		}
		g.Wait()
		return
	}
	t.Skip("the watch never began while the operational state was pending (5 attempts): a busy machine")
}

func TestGuestWatcherPending(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestWatcherSeedsPendingOperstate; runs inside a test namespace")
	}
	iface := os.Getenv("PWL_IF")
	state := func() linkState {
		msgs, err := nl.DumpLinkMessages()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range parseLinks(msgs) {
			if s.Name == iface {
				return s
			}
		}
		t.Fatalf("no %s", iface)
		return linkState{}
	}
	pending := func(s linkState) bool { return s.AdminUp && s.Carrier && s.Oper == operDown }
	fmt.Println("PWL: READY")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "watch" {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		before := state()
		evs, err := New(Options{Logger: testLogger(t), Interfaces: []string{iface}}).WatchLinks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		after := state()
		fmt.Printf("PWL: SEED pending=%v oper=%d carrier=%v changes=%d..%d\n", pending(before) && pending(after) && before.Changes == after.Changes, after.Oper, after.Carrier, before.Changes, after.Changes)
		// The link watch runs within a second; 2.5 s leaves it room.
		var got []string
		end := time.After(2500 * time.Millisecond)
	collect:
		for {
			select {
			case e := <-evs:
				got = append(got, fmt.Sprintf("%s/%d", e.Kind, e.CarrierChanges))
			case <-end:
				break collect
			}
		}
		cancel()
		now := state()
		fmt.Printf("PWL: RESULT settled=%v events=%v oper=%d changes=%d\n", now.Oper == operUp && now.Changes == after.Changes, got, now.Oper, now.Changes)
	}
}
