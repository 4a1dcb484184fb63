package controller

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
)

// netlinkRouter is the Linux Router: routes in the main table of this
// network namespace (libvirt's).
type netlinkRouter struct{}

// DefaultRouter returns the platform's Router.
func DefaultRouter() Router { return netlinkRouter{} }

func hostRoute(addr netip.Addr, dev string) (*rtnetlink.RouteMessage, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return nil, fmt.Errorf("route %s via %s: %w", addr, dev, err)
	}
	return &rtnetlink.RouteMessage{
		Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_STATIC, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{Dst: addr.AsSlice(), OutIface: uint32(ifi.Index)},
	}, nil
}

func (netlinkRouter) AddHost(addr netip.Addr, dev string) error {
	m, err := hostRoute(addr, dev)
	if err != nil {
		return err
	}
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	if err := c.Route.Replace(m); err != nil {
		return fmt.Errorf("add route %s/32 dev %s: %w", addr, dev, err)
	}
	return nil
}

func (netlinkRouter) DelHost(addr netip.Addr, dev string) error {
	m, err := hostRoute(addr, dev)
	if err != nil {
		return nil // the device is gone, and its routes with it
	}
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	if err := c.Route.Delete(m); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove route %s/32 dev %s: %w", addr, dev, err)
	}
	return nil
}
