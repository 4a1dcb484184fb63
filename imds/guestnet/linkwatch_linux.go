package guestnet

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/prewarm/prewarm/linux/nl"
)

// watchLinks subscribes to the kernel's link notifications (linux/nl:
// devices created, changed, removed) and sends on events after each
// batch. The channel is closed if the subscription fails later;
// closeWatch ends it.
func watchLinks() (events <-chan struct{}, closeWatch func(), err error) {
	c, err := nl.SubscribeLinks()
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		for {
			// The states are not needed: a reconcile lists the links.
			if _, _, err := nl.ReceiveLinks(c, nl.DumpLinkMessages); err != nil && !errors.Is(err, unix.ENOBUFS) {
				// Closed, or failing: the binder falls back to polling.
				return
			}
			// After an overrun events were lost, which a reconcile covers.
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { c.Close() }, nil
}
