package nl

import (
	"errors"
	"fmt"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// LinkState is one link as an RTM_NEWLINK or RTM_DELLINK message shows it:
// a notification, or one entry of a dump.
type LinkState struct {
	Index   int
	Name    string
	MAC     string // lower case; "" unless the link has a 6-byte address
	AdminUp bool   // IFF_UP
	// Carrier is IFLA_CARRIER, or IFF_LOWER_UP when the message lacks it.
	Carrier bool
	Oper    uint8 // IFLA_OPERSTATE: an IF_OPER_* value
	// Changes is IFLA_CARRIER_CHANGES, the kernel's count of carrier
	// changes: a rise of 2 with the carrier still up is a bounce whose
	// down notice the kernel did not send.
	Changes  uint32
	Loopback bool
	Deleted  bool // an RTM_DELLINK
}

// Receiver is what ReceiveLinks reads notifications from: the connection
// SubscribeLinks returns, or canned messages in a test of a watcher.
type Receiver interface {
	Receive() ([]netlink.Message, error)
}

// SubscribeLinks subscribes to the kernel's link notifications
// (RTNLGRP_LINK: links created, changed, removed) in the calling process's
// network namespace. Read it with ReceiveLinks; Close ends it and
// unblocks a Receive.
func SubscribeLinks() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_LINK})
	if err != nil {
		return nil, fmt.Errorf("subscribe to RTNLGRP_LINK: %w", err)
	}
	// A bigger buffer makes overruns rarer; an overrun is handled anyway.
	_ = c.SetReadBuffer(1 << 20)
	return c, nil
}

// DumpLinkMessages asks the kernel for every link (an RTM_GETLINK dump) on
// a connection of its own.
func DumpLinkMessages() ([]netlink.Message, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	defer c.Close()
	req := make([]byte, unix.SizeofIfInfomsg)
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", err)
	}
	return msgs, nil
}

// DumpLinks lists the state of every link.
func DumpLinks() ([]LinkState, error) {
	msgs, err := DumpLinkMessages()
	if err != nil {
		return nil, err
	}
	return ParseLinks(msgs), nil
}

// ReceiveLinks blocks for the next batch of link notifications from src
// and returns their states. When the kernel dropped notifications for us
// (ENOBUFS) it resyncs: it returns every link from dump with full set, and
// a caller treats links missing from it as gone. A failed resync returns
// an error that wraps unix.ENOBUFS too.
func ReceiveLinks(src Receiver, dump func() ([]netlink.Message, error)) (states []LinkState, full bool, err error) {
	msgs, err := src.Receive()
	if errors.Is(err, unix.ENOBUFS) {
		msgs, err := dump()
		if err != nil {
			return nil, false, fmt.Errorf("resync after overrun (%w): %w", unix.ENOBUFS, err)
		}
		return ParseLinks(msgs), true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return ParseLinks(msgs), false, nil
}

// ParseLinks decodes RTM_NEWLINK and RTM_DELLINK messages, skipping others
// and any it cannot decode.
func ParseLinks(msgs []netlink.Message) []LinkState {
	var out []LinkState
	for _, m := range msgs {
		t := m.Header.Type
		if t != unix.RTM_NEWLINK && t != unix.RTM_DELLINK {
			continue
		}
		var lm rtnetlink.LinkMessage
		if err := lm.UnmarshalBinary(m.Data); err != nil {
			continue
		}
		out = append(out, linkState(&lm, t == unix.RTM_DELLINK))
	}
	return out
}

func linkState(lm *rtnetlink.LinkMessage, deleted bool) LinkState {
	s := LinkState{
		Index:    int(lm.Index),
		AdminUp:  lm.Flags&unix.IFF_UP != 0,
		Loopback: lm.Flags&unix.IFF_LOOPBACK != 0,
		Deleted:  deleted,
	}
	if a := lm.Attributes; a != nil {
		s.Name = a.Name
		if len(a.Address) == 6 {
			s.MAC = net.HardwareAddr(a.Address).String()
		}
		if a.Carrier != nil {
			s.Carrier = *a.Carrier == 1
		} else {
			s.Carrier = lm.Flags&unix.IFF_LOWER_UP != 0
		}
		if a.CarrierChanges != nil {
			s.Changes = *a.CarrierChanges
		}
		s.Oper = uint8(a.OperationalState)
	}
	return s
}
