package nl

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
)

// TestSubscribeLinks: in a network namespace of its own, a subscription
// sees a link appear, its carrier rise and its removal, with the carrier
// counter, and a dump lists it meanwhile.
func TestSubscribeLinks(t *testing.T) {
	if !netlab.InGuest() {
		netlab.RequireRoot(t, "ip")
		netlab.NewNetns(t, netlab.Unique("pwnl")).RunTest(t, "TestSubscribeLinks", 60*time.Second)
		return
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	c, err := SubscribeLinks()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// next reads notifications until one for name matches ok (bounded).
	next := func(what, name string, ok func(LinkState) bool) LinkState {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			states, _, err := ReceiveLinks(c, DumpLinkMessages)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			for _, s := range states {
				if s.Name == name && ok(s) {
					return s
				}
			}
		}
	}
	ip("link", "add", "pwn0", "type", "veth", "peer", "name", "pwn0p")
	s := next("pwn0 created", "pwn0", func(s LinkState) bool { return !s.Deleted })
	if s.Index <= 1 || s.Loopback || len(s.MAC) != 17 {
		t.Fatalf("new link %+v, want a real index, a MAC and no loopback flag", s)
	}
	ip("link", "set", "pwn0p", "up")
	ip("link", "set", "pwn0", "up")
	up := next("pwn0 carrier up", "pwn0", func(s LinkState) bool { return s.AdminUp && s.Carrier })
	if up.Changes == 0 {
		t.Fatalf("carrier up with a carrier-change count of 0: %+v", up)
	}
	all, err := DumpLinks()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range all {
		found = found || (d.Name == "pwn0" && d.Index == s.Index && d.Carrier)
	}
	if !found {
		t.Fatalf("dump %+v lacks pwn0 (index %d, carrier up)", all, s.Index)
	}
	ip("link", "del", "pwn0")
	next("pwn0 removed", "pwn0", func(s LinkState) bool { return s.Deleted })
}
