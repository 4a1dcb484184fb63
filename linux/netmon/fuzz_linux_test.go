package netmon

import (
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FuzzParseLinks: no message body makes the parser panic.
func FuzzParseLinks(f *testing.F) {
	f.Add(eth0.msg().Data)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []netlink.HeaderType{unix.RTM_NEWLINK, unix.RTM_DELLINK} {
			tr := newTracker(func(linkState) bool { return true })
			for _, s := range parseLinks([]netlink.Message{{Header: netlink.Header{Type: typ}, Data: b}}) {
				tr.apply(s)
			}
		}
	})
}
