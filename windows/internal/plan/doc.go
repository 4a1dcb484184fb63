// Package plan holds the portable decisions of the Windows platform: what
// the machine's current state and the document's desired state mean for
// each step (hostname, network, links, DHCP renewal, users) and how a step's
// result is assembled. The windows-only code reads the machine, asks this
// package what to do, and does it; so every decision is unit tested on
// every OS.
package plan
