//go:build !linux

package dialect

import "net"

// setHopLimit does nothing off Linux: prewarm-imds serves guests from a
// Linux host, and the other builds only need to compile.
func setHopLimit(net.Conn, int) error { return nil }
