package status

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxLinkEvents bounds a report's linkEvents: the agent keeps the latest
// this many, and the IMDS refuses a report with more.
const MaxLinkEvents = 16

// Link event kinds. An event report (one the agent makes for a link event)
// has the kind of its event as its event, except a finished renewal, which
// is reported as EventDHCPRenewed.
const (
	// LinkCarrierLost: the interface lost its carrier (or went down).
	LinkCarrierLost = "carrier-lost"
	// LinkCarrierBack: the carrier came back, or the carrier-change
	// counter rose while it was up (a bounce shorter than the kernel's
	// link-event rate limit).
	LinkCarrierBack = "carrier-back"
	// LinkRenewing: a DHCP renewal of the interface started.
	LinkRenewing = "dhcp-renewing"
	// LinkRenewed: the renewal finished (Error set if it failed).
	LinkRenewed = EventDHCPRenewed
)

// LinkEvent is one thing the agent saw happen to a guest link or did to
// it: a carrier change, or a DHCP renewal started or finished.
type LinkEvent struct {
	Time      Time   `json:"time"`
	Kind      string `json:"kind"`
	Interface string `json:"interface"`
	// CarrierChanges is the interface's carrier-change counter after a
	// carrier event (Linux), 0 where the OS keeps none. Coalesced counts
	// the carrier changes merged into this entry while a renewal of the
	// interface ran (a storm is one entry, with the last state and counter).
	CarrierChanges uint32 `json:"carrierChanges,omitempty"`
	Coalesced      int    `json:"coalesced,omitempty"`
	// Client is the DHCP client that renews (dhclient, dhcpcd, udhcpc,
	// networkd, networkmanager, builtin, windows), where known.
	Client string `json:"client,omitempty"`
	// OldAddresses and Addresses are the interface's addresses before and
	// after a finished renewal (CIDR prefixes); MS how long it took.
	OldAddresses []string `json:"oldAddresses,omitzero"`
	Addresses    []string `json:"addresses,omitzero"`
	MS           int64    `json:"ms,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// ValidLinkKind reports whether k is a link event kind of the contract.
func ValidLinkKind(k string) bool {
	switch k {
	case LinkCarrierLost, LinkCarrierBack, LinkRenewing, LinkRenewed:
		return true
	}
	return false
}

// maxNameBytes bounds an interface or client name in a link event (an
// interface name is at most 15 bytes on Linux, 256 characters on Windows).
const maxNameBytes = 256

// checkLinkEvents adds to fail every rule evs breaks.
func checkLinkEvents(evs []LinkEvent, fail func(path, reason string)) {
	if len(evs) > MaxLinkEvents {
		fail("linkEvents", fmt.Sprintf("at most %d events (got %d)", MaxLinkEvents, len(evs)))
		return
	}
	for i, e := range evs {
		p := func(f string) string { return fmt.Sprintf("linkEvents[%d].%s", i, f) }
		if e.Time.IsZero() {
			fail(p("time"), "required")
		}
		if !ValidLinkKind(e.Kind) {
			fail(p("kind"), fmt.Sprintf("must be one of %s, %s, %s, %s (got %q)", LinkCarrierLost, LinkCarrierBack, LinkRenewing, LinkRenewed, e.Kind))
		}
		if e.Interface == "" || len(e.Interface) > maxNameBytes {
			fail(p("interface"), fmt.Sprintf("required, at most %d bytes", maxNameBytes))
		}
		if !validClient(e.Client) {
			fail(p("client"), "at most 32 characters a-z, 0-9 and -")
		}
		if e.MS < 0 {
			fail(p("ms"), "must not be negative")
		}
		if e.Coalesced < 0 {
			fail(p("coalesced"), "must not be negative")
		}
		for _, f := range []struct {
			name string
			as   []string
		}{{"oldAddresses", e.OldAddresses}, {"addresses", e.Addresses}} {
			for j, a := range f.as {
				if _, err := netip.ParsePrefix(a); err != nil {
					fail(fmt.Sprintf("linkEvents[%d].%s[%d]", i, f.name, j), fmt.Sprintf("must be an address with its prefix length, as 10.0.0.5/24 (got %q)", a))
				}
			}
		}
	}
}

func validClient(c string) bool {
	if len(c) > 32 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Summary renders e for people, without its time: kind and interface,
// then the carrier-change counter, or the renewal's client, its addresses
// before and after (or its error) and its duration. It is the guest's
// text: a host prints it through cli.Printable.
func (e LinkEvent) Summary() string {
	s := e.Kind + " " + e.Interface
	if e.Kind == LinkCarrierLost || e.Kind == LinkCarrierBack {
		var p []string
		if e.CarrierChanges != 0 {
			p = append(p, fmt.Sprintf("carrier changes %d", e.CarrierChanges))
		}
		if e.Coalesced != 0 {
			p = append(p, fmt.Sprintf("%d changes merged", e.Coalesced))
		}
		if len(p) > 0 {
			s += " (" + strings.Join(p, ", ") + ")"
		}
		return s
	}
	if e.Client != "" {
		s += " via " + e.Client
	}
	if e.Kind != LinkRenewed {
		return s
	}
	addrs := func(a []string) string {
		if len(a) == 0 {
			return "none"
		}
		return strings.Join(a, " ")
	}
	if e.Error != "" {
		s += ": FAILED: " + e.Error
	} else {
		s += ": " + addrs(e.OldAddresses) + " -> " + addrs(e.Addresses)
	}
	return s + fmt.Sprintf(" in %d ms", e.MS)
}
