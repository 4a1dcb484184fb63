//go:build !linux

package guestnet

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// ErrBindToDevice says binding a listener to a network device is not
// supported on this OS.
var ErrBindToDevice = errors.New("binding a listener to a network device is supported on Linux only")

// listen listens on addr for the guest API. Binding to a device
// (hostInterface identity) is Linux only; with a device it fails with
// ErrBindToDevice here.
func listen(ctx context.Context, addr, device string) (net.Listener, error) {
	if device != "" {
		return nil, fmt.Errorf("listen on %s bound to device %s: %w", addr, device, ErrBindToDevice)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
