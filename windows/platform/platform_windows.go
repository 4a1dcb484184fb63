package platform

import (
	"log/slog"

	"github.com/prewarm/prewarm/agent"
)

// Options configure the Windows platform.
type Options struct {
	// Root is the target root every file write is relative to ("" on a
	// real machine).
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

// New returns the Windows platform.
func New(opts Options) (agent.Platform, error) {
	// Filled in by the Windows platform work; until then every step fails
	// loudly rather than pretending to succeed.
	return agent.Unsupported(), nil
}
