package nl

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FuzzParseLinks: no message body makes the link parser panic, a state is
// Deleted exactly when its message was an RTM_DELLINK, and other message
// types are skipped.
func FuzzParseLinks(f *testing.F) {
	f.Add(linkMsg(unix.RTM_NEWLINK, 3, "eth0", unix.IFF_UP, 1, 4).Data)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []netlink.HeaderType{unix.RTM_NEWLINK, unix.RTM_DELLINK} {
			for _, s := range ParseLinks([]netlink.Message{{Header: netlink.Header{Type: typ}, Data: b}}) {
				if s.Deleted != (typ == unix.RTM_DELLINK) {
					t.Fatalf("message type %d gave Deleted=%v", typ, s.Deleted)
				}
			}
		}
		if got := ParseLinks([]netlink.Message{{Header: netlink.Header{Type: unix.RTM_NEWADDR}, Data: b}}); len(got) != 0 {
			t.Fatalf("an RTM_NEWADDR parsed as links: %+v", got)
		}
	})
}
