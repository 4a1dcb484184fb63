package platform

import (
	"context"

	"github.com/prewarm/prewarm/agent"
)

var _ agent.DHCPClientNamer = (*dhcpRenewer)(nil)

// DHCPClient implements agent.DHCPClientNamer: Windows' own DHCP client
// renews every adapter.
func (d *dhcpRenewer) DHCPClient(context.Context, string) (string, error) { return "windows", nil }
