//go:build !linux

package guestnet

import (
	"errors"
	"net"
)

// PeerWatch is Linux only: elsewhere a parked poll whose guest went away
// holds its connection until its timeout.
type PeerWatch struct{}

// NewPeerWatch fails: watching is Linux only.
func NewPeerWatch() (*PeerWatch, error) {
	return nil, errors.New("watching parked connections is supported on Linux only")
}

// Watch fails: watching is Linux only.
func (w *PeerWatch) Watch(net.Conn, func()) (func(), error) {
	return nil, errors.New("unsupported")
}

// Close does nothing.
func (w *PeerWatch) Close() {}
