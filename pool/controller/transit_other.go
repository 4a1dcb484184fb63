//go:build !linux

package controller

import "net/netip"

type noRouter struct{}

// DefaultRouter returns the platform's Router: none off Linux (libvirt
// hosts are Linux), so claims go by the guest's DHCP renewal alone.
func DefaultRouter() Router { return noRouter{} }

func (noRouter) AddHost(netip.Addr, string) error { return nil }
func (noRouter) DelHost(netip.Addr, string) error { return nil }
