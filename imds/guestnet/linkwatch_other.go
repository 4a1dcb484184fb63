//go:build !linux

package guestnet

import "errors"

// watchLinks is Linux only; elsewhere the binder checks periodically.
func watchLinks() (<-chan struct{}, func(), error) {
	return nil, nil, errors.New("link notifications are watched on Linux only")
}
