package guestnet

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// watchLinks subscribes to the kernel's link notifications (RTMGRP_LINK:
// devices created, changed, removed) and sends on events after each batch.
// The channel is closed if the subscription fails later; closeWatch ends
// it.
func watchLinks() (events <-chan struct{}, closeWatch func(), err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("netlink bind RTMGRP_LINK: %w", err)
	}
	// A non-blocking fd goes through the runtime poller, so Close
	// unblocks the Read below.
	f := os.NewFile(uintptr(fd), "netlink-route")
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				if errors.Is(err, unix.ENOBUFS) {
					// Overrun: events were lost, which a reconcile covers.
				} else {
					return
				}
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}
