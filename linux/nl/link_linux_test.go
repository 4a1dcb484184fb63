package nl

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// linkMsg builds an RTM_NEWLINK (or RTM_DELLINK) message.
func linkMsg(typ netlink.HeaderType, index int, name string, flags uint32, carrier uint8, changes uint32) netlink.Message {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	binary.NativeEndian.PutUint32(b[8:12], flags)
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Bytes(unix.IFLA_ADDRESS, []byte{0x52, 0x54, 0, 0xAB, 0, byte(index)})
	ae.Uint8(unix.IFLA_CARRIER, carrier)
	ae.Uint8(unix.IFLA_OPERSTATE, 6)
	ae.Uint32(unix.IFLA_CARRIER_CHANGES, changes)
	attrs, err := ae.Encode()
	if err != nil {
		panic(err)
	}
	return netlink.Message{Header: netlink.Header{Type: typ}, Data: append(b, attrs...)}
}

type fakeSource struct {
	msgs []netlink.Message
	err  error
}

func (f *fakeSource) Receive() ([]netlink.Message, error) { return f.msgs, f.err }

func TestParseLinks(t *testing.T) {
	got := ParseLinks([]netlink.Message{
		linkMsg(unix.RTM_NEWLINK, 3, "eth0", unix.IFF_UP, 1, 4),
		{Header: netlink.Header{Type: unix.RTM_NEWADDR}, Data: []byte{1, 2, 3}},
		{Header: netlink.Header{Type: unix.RTM_NEWLINK}, Data: []byte{1, 2, 3}},
		linkMsg(unix.RTM_DELLINK, 4, "vnet0", 0, 0, 0),
	})
	want := []LinkState{
		{Index: 3, Name: "eth0", MAC: "52:54:00:ab:00:03", AdminUp: true, Carrier: true, Oper: 6, Changes: 4},
		{Index: 4, Name: "vnet0", MAC: "52:54:00:ab:00:04", Oper: 6, Deleted: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d states %+v, want %+v (other types and undecodable messages skipped)", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("state %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReceiveLinksResyncsAfterOverrun(t *testing.T) {
	dump := func() ([]netlink.Message, error) {
		return []netlink.Message{linkMsg(unix.RTM_NEWLINK, 3, "eth0", unix.IFF_UP, 1, 6)}, nil
	}
	// A batch of notifications is a partial list.
	states, full, err := ReceiveLinks(&fakeSource{msgs: []netlink.Message{linkMsg(unix.RTM_NEWLINK, 3, "eth0", unix.IFF_UP, 0, 5)}}, dump)
	if err != nil || full || len(states) != 1 || states[0].Carrier || states[0].Changes != 5 {
		t.Fatalf("notification: %+v full=%v err=%v, want eth0 without carrier, 5 changes, not full", states, full, err)
	}
	// ENOBUFS: the dump, marked full.
	states, full, err = ReceiveLinks(&fakeSource{err: unix.ENOBUFS}, dump)
	if err != nil || !full || len(states) != 1 || !states[0].Carrier || states[0].Changes != 6 {
		t.Fatalf("after overrun: %+v full=%v err=%v, want the dump, full", states, full, err)
	}
	// A failing resync says both.
	boom := errors.New("boom")
	_, _, err = ReceiveLinks(&fakeSource{err: unix.ENOBUFS}, func() ([]netlink.Message, error) { return nil, boom })
	if !errors.Is(err, unix.ENOBUFS) || !errors.Is(err, boom) {
		t.Fatalf("failed resync: err = %v, want one wrapping ENOBUFS and the dump's error", err)
	}
	// Another error is passed on as it is.
	_, _, err = ReceiveLinks(&fakeSource{err: boom}, dump)
	if !errors.Is(err, boom) || errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("receive error: %v, want boom alone", err)
	}
}

// The real kernel: every namespace has a loopback link.
func TestDumpLinksHasLoopback(t *testing.T) {
	states, err := DumpLinks()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Loopback {
			if s.Name != "lo" || s.Index != 1 {
				t.Fatalf("loopback link %+v, want lo with index 1", s)
			}
			return
		}
	}
	t.Fatalf("no loopback link among %+v", states)
}
