//go:build !linux

package server

import (
	"errors"
	"net"
)

// peerWatch is Linux only: elsewhere a parked poll whose guest went away
// holds its connection until its timeout.
type peerWatch struct{}

func newPeerWatch() (*peerWatch, error) {
	return nil, errors.New("watching parked connections is supported on Linux only")
}

func (w *peerWatch) watch(net.Conn, func()) (func(), error) {
	return nil, errors.New("unsupported")
}

func (w *peerWatch) close() {}
