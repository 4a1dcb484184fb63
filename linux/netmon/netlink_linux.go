package netmon

import (
	"errors"
	"fmt"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nlConn is the part of *netlink.Conn the monitor uses; tests feed canned
// messages through a fake.
type nlConn interface {
	Receive() ([]netlink.Message, error)
	Close() error
}

// nlMon reads RTNLGRP_LINK notifications. On ENOBUFS (the kernel dropped
// notifications for us) it resyncs from a dump.
type nlMon struct {
	c    nlConn
	dump func() ([]netlink.Message, error)
}

func dialNetlink() (*nlMon, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_LINK})
	if err != nil {
		return nil, fmt.Errorf("subscribe to RTNLGRP_LINK: %w", err)
	}
	// A bigger buffer makes overruns rarer; an overrun is handled anyway.
	_ = c.SetReadBuffer(1 << 20)
	return &nlMon{c: c, dump: dumpLinks}, nil
}

func dumpLinks() ([]netlink.Message, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := make([]byte, unix.SizeofIfInfomsg)
	return c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
}

func (m *nlMon) Close() error { return m.c.Close() }

func (m *nlMon) Dump() ([]linkState, error) {
	msgs, err := m.dump()
	if err != nil {
		return nil, err
	}
	return parseLinks(msgs), nil
}

func (m *nlMon) Receive() ([]linkState, bool, error) {
	msgs, err := m.c.Receive()
	if errors.Is(err, unix.ENOBUFS) {
		s, err := m.Dump()
		if err != nil {
			return nil, false, fmt.Errorf("resync after overrun: %w", err)
		}
		return s, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return parseLinks(msgs), false, nil
}

// parseLinks decodes RTM_NEWLINK and RTM_DELLINK messages, skipping others
// and any it cannot decode.
func parseLinks(msgs []netlink.Message) []linkState {
	var out []linkState
	for _, m := range msgs {
		t := m.Header.Type
		if t != unix.RTM_NEWLINK && t != unix.RTM_DELLINK {
			continue
		}
		var lm rtnetlink.LinkMessage
		if err := lm.UnmarshalBinary(m.Data); err != nil {
			continue
		}
		out = append(out, fromLinkMessage(&lm, t == unix.RTM_DELLINK))
	}
	return out
}

func fromLinkMessage(lm *rtnetlink.LinkMessage, deleted bool) linkState {
	s := linkState{
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
