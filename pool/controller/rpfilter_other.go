//go:build !linux

package controller

import "log/slog"

// setRPFilter is Linux's; libvirt hosts are Linux.
func setRPFilter(*slog.Logger, string) {}
