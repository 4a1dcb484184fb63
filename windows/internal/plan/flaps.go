package plan

import "sync"

// FlapCounter counts the connected-state changes of each interface, as
// NotifyIpInterfaceChange reports them, the way Linux's carrier_changes
// counts carrier changes: every connected→disconnected and
// disconnected→connected change of an interface adds one. The link watcher
// puts the count into linktrack.Link.Changes, so a link that went down and
// came back between two reads of the adapters (a short flap, which a poll
// of OperStatus sees as up both times) still makes a carrier-back event.
//
// Windows notifies per address family: a flap of a dual-stack interface
// comes as an IPv4 and an IPv6 change. Each family's changes are counted
// apart and an interface's count is the larger, so one flap counts once.
// The first state seen of an interface and family counts nothing: what it
// changed from is unknown. FlapCounter is safe for concurrent use (the
// notifications arrive on a thread of iphlpapi's).
type FlapCounter struct {
	mu sync.Mutex
	m  map[flapKey]*flapState
}

type flapKey struct {
	index  uint32
	family uint16
}

type flapState struct {
	connected bool
	changes   uint32
}

// Observe records that the interface index of address family family is
// connected or not, and returns the interface's count afterwards.
func (c *FlapCounter) Observe(index uint32, family uint16, connected bool) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[flapKey]*flapState{}
	}
	k := flapKey{index, family}
	if s, ok := c.m[k]; !ok {
		c.m[k] = &flapState{connected: connected}
	} else if s.connected != connected {
		s.connected = connected
		s.changes++
	}
	return c.changesLocked(index)
}

// Forget drops what is known of the interface index in family family (the
// interface was deleted; Windows may reuse its index for another).
func (c *FlapCounter) Forget(index uint32, family uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, flapKey{index, family})
}

// Changes returns the count of the interface index: the largest of its
// families' counts (0 for an interface never seen changing).
func (c *FlapCounter) Changes(index uint32) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changesLocked(index)
}

func (c *FlapCounter) changesLocked(index uint32) uint32 {
	var n uint32
	for k, s := range c.m {
		if k.index == index {
			n = max(n, s.changes)
		}
	}
	return n
}
