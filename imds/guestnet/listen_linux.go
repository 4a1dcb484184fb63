package guestnet

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listen listens on addr (host:port) for the guest API. With a non-empty
// device the socket is bound to that host network device
// (SO_BINDTODEVICE): it accepts only connections that arrive on it, so the
// server can attribute them to the instance registered with that
// hostInterface whatever their source address.
//
// Every guest listener sets SO_REUSEPORT, so one listener per device and
// one device-less listener can share 169.254.169.254:80. The kernel does
// not rank them by device: it gives a connection to the first listener on
// its list that matches the arrival device, and IPv4 listeners join that
// list at its head. So the device-less listener must be the oldest: it is
// opened before any device listener (Listen, then Listener.StartBinder)
// and never reopened. IPv6 listeners join at the tail, so a device-less
// IPv6 listener would take every device's guests: listen on IPv4
// (169.254.169.254) when guests are registered by host interface.
func listen(ctx context.Context, addr, device string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				return
			}
			if device != "" {
				if serr = unix.BindToDevice(int(fd), device); serr != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", device, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		if device != "" {
			return nil, fmt.Errorf("listen on %s bound to device %s: %w", addr, device, err)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
