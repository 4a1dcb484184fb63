// Package netmon watches the links of a Linux machine through rtnetlink
// (RTNLGRP_LINK) and reports carrier changes of the interfaces the agent
// manages. A flap is a rise of the carrier-change counter
// (IFLA_CARRIER_CHANGES), not only a DOWN followed by an UP: the kernel
// rate-limits carrier-down notices, so a short bounce can arrive as one
// message with the carrier still up and the counter up by 2. When multicast
// netlink is unavailable it logs so and polls /sys/class/net instead. The
// rules that turn link states into events, and the queue that holds them
// for a slow reader, are agent/linktrack's, shared with Windows: this
// package only reads the links.
package netmon
