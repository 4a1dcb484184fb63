package dhcp

import (
	"context"
	"fmt"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/linux/nl"
)

var _ agent.DHCPClientNamer = (*Renewer)(nil)

// DHCPClient implements agent.DHCPClientNamer: the client a renewal of
// iface would go through now (the one RenewDHCP then names in its Lease),
// found the same way, so the agent reports a renewal's start with it.
func (r *Renewer) DHCPClient(ctx context.Context, iface string) (string, error) {
	c, err := nl.Dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	link, err := c.LinkByName(iface)
	if err != nil {
		return "", fmt.Errorf("DHCP client of %s: %w", iface, err)
	}
	return r.owner(iface, link.Index).Client, nil
}
