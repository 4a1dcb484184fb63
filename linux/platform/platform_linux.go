package platform

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
)

// Options configure the Linux platform.
type Options struct {
	// Root is the target root every file write is relative to ("/" on a
	// real machine, a scratch directory in tests and image builds).
	Root string
	// StateDir holds the platform's own records (e.g. which addresses the
	// agent added), already relative to nothing: an absolute host path.
	StateDir string
	// DHCPClient overrides detection of the DHCP client ("" = detect;
	// "dhclient", "dhcpcd", "udhcpc", "networkd", "networkmanager", "builtin").
	DHCPClient string
	// Interfaces restricts the managed interfaces (nil = every non-loopback NIC).
	Interfaces []string
	Logger     *slog.Logger
}

// New returns the Linux platform.
func New(opts Options) (agent.Platform, error) {
	// Filled in by the Linux platform work; until then every step fails
	// loudly rather than pretending to succeed.
	return agent.Unsupported(), nil
}
