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
