// Package platform assembles the Linux implementations of the agent's
// platform interfaces (link watching, DHCP renewal, hostname, timezone,
// users, network) into one agent.Platform. It builds only on Linux.
package platform
