package netmon

import (
	"github.com/mdlayher/netlink"

	"github.com/prewarm/prewarm/linux/nl"
)

// nlConn is the part of *netlink.Conn the monitor uses; tests feed canned
// messages through a fake.
type nlConn interface {
	nl.Receiver
	Close() error
}

// nlMon reads RTNLGRP_LINK notifications through linux/nl, which resyncs
// from a dump on ENOBUFS (the kernel dropped notifications for us).
type nlMon struct {
	c    nlConn
	dump func() ([]netlink.Message, error)
}

func dialNetlink() (*nlMon, error) {
	c, err := nl.SubscribeLinks()
	if err != nil {
		return nil, err
	}
	return &nlMon{c: c, dump: nl.DumpLinkMessages}, nil
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
	states, full, err := nl.ReceiveLinks(m.c, m.dump)
	if err != nil {
		return nil, false, err
	}
	return fromNL(states), full, nil
}

// parseLinks decodes RTM_NEWLINK and RTM_DELLINK messages (nl.ParseLinks).
func parseLinks(msgs []netlink.Message) []linkState {
	return fromNL(nl.ParseLinks(msgs))
}

// fromNL turns linux/nl's link states into the watcher's.
func fromNL(in []nl.LinkState) []linkState {
	if in == nil {
		return nil
	}
	out := make([]linkState, len(in))
	for i, s := range in {
		out[i] = linkState{
			Index: s.Index, Name: s.Name, MAC: s.MAC,
			AdminUp: s.AdminUp, Carrier: s.Carrier, Oper: s.Oper, Changes: s.Changes,
			Loopback: s.Loopback, Deleted: s.Deleted,
		}
	}
	return out
}
