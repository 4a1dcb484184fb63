package guestnet

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Listener is the device-less guest listener of an address: it serves
// every guest whose connection no device-bound listener of the same
// address takes. Device-bound listeners on its address come from its
// StartBinder (or ListenDevice), so they are newer than it, as the
// kernel's SO_REUSEPORT lookup needs (see listen in listen_linux.go).
type Listener struct {
	net.Listener
	// addr is where device listeners bind: the host Listen was given,
	// with the port the kernel chose when it was 0.
	addr string
}

// Listen opens the device-less guest listener on addr (host:port) with
// SO_REUSEPORT. Open it before any device-bound listener of addr and keep
// it for the process's life: a device-less listener newer than a device
// one takes that device's guests.
func Listen(ctx context.Context, addr string) (*Listener, error) {
	ln, err := listen(ctx, addr, "")
	if err != nil {
		return nil, err
	}
	// The device listeners bind the host as given (":80" stays every
	// address) and the port the kernel gave this one.
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("guest listener %s: %w", addr, err)
	}
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("guest listener %s: %w", addr, err)
	}
	return &Listener{Listener: ln, addr: net.JoinHostPort(host, port)}, nil
}

// ListenDevice opens a guest listener on addr bound to the host network
// device (SO_BINDTODEVICE, Linux): it accepts only connections that arrive
// on that device. When addr also has a device-less listener, that one
// must be older (Listen). Listener.StartBinder opens and closes these
// for the devices it is asked to follow; ListenDevice is for a caller
// that serves one fixed device itself.
func ListenDevice(ctx context.Context, addr, device string) (net.Listener, error) {
	if device == "" {
		return nil, errors.New("guest listener: device: must not be empty (use Listen for the device-less listener)")
	}
	return listen(ctx, addr, device)
}
