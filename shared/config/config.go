// Package config holds the config document of the Prewarm wire contract
// (PROTOCOL.md section 1): its Go types, a strict decoder that reports every
// unknown or mistyped field with its path, and validation that reports every
// rule a document breaks.
//
// Absence matters in this document: a missing section means "leave that part
// of the machine as it is". Scalars use their zero value for "absent" (an
// explicitly empty string is a validation error, so the two never meet), and
// slices use nil for "absent" and a non-nil empty slice for "present and
// empty"; the `omitzero` tags keep that distinction across an encode/decode
// round trip.
package config

import (
	"net/netip"
	"slices"
)

// MaxDocumentBytes is the largest encoded config document accepted anywhere
// (request bodies and publish-directory files alike).
const MaxDocumentBytes = 262144

// MaxUserDataBytes is the largest userData string.
const MaxUserDataBytes = 65536

// Redacted replaces plaintext passwords in every admin read-back.
const Redacted = "REDACTED"

// Sudo levels of User.Sudo.
const (
	SudoNone     = "none"
	SudoPassword = "password"
	SudoNoPasswd = "nopasswd"
)

// Document is one instance's config document.
type Document struct {
	// InstanceID and Generation are stamped by the IMDS; a publisher's values
	// are ignored.
	InstanceID string `json:"instanceId,omitempty"`
	Generation int64  `json:"generation,omitempty"`

	// Partial is the partial tag: the placeholder config of a pooled VM.
	Partial bool `json:"partial,omitempty"`

	Hostname string   `json:"hostname,omitempty"`
	Timezone string   `json:"timezone,omitempty"`
	UserData *string  `json:"userData,omitzero"`
	Users    []User   `json:"users,omitzero"`
	Network  *Network `json:"network,omitzero"`
	// SSHHostKeys asks for new SSH host keys (hostkeys.go).
	SSHHostKeys *SSHHostKeys `json:"sshHostKeys,omitzero"`
	// Reboot is the reboot policy (reboot.go).
	Reboot string `json:"reboot,omitempty"`
}

// User is one account the agent ensures.
type User struct {
	Name              string   `json:"name"`
	Groups            []string `json:"groups,omitzero"`
	Sudo              string   `json:"sudo,omitempty"`
	Shell             string   `json:"shell,omitempty"`
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitzero"`
	PasswordHash      string   `json:"passwordHash,omitempty"`
	// Password is plaintext; it never enters a log, a report or a read-back.
	Password string `json:"password,omitempty"`
}

// SudoLevel returns the effective sudo level ("none" when unset).
func (u User) SudoLevel() string {
	if u.Sudo == "" {
		return SudoNone
	}
	return u.Sudo
}

// Network is the network section.
type Network struct {
	// RenewDHCP is a counter; a change asks the agent to renew DHCP on every
	// DHCP-managed interface. Nil means absent.
	RenewDHCP  *int64      `json:"renewDhcp,omitzero"`
	Interfaces []Interface `json:"interfaces,omitzero"`
}

// Interface configures one NIC, matched by MAC.
//
// Its address fields are parsed once, by Decode: adapters use the typed
// values and never parse a document string again. They encode in canonical
// form (see MAC; netip's String for addresses), and an address with a
// prefix length keeps its host bits: 10.1.0.5/24 stays 10.1.0.5/24.
type Interface struct {
	MAC   MAC  `json:"mac"`
	DHCP4 bool `json:"dhcp4,omitempty"`
	// Addresses are interface addresses with their prefix length
	// (10.1.0.5/24), not networks: the host bits are the address.
	Addresses []netip.Prefix `json:"addresses,omitzero"`
	// Gateway4 is the IPv4 default gateway; the zero Addr is none.
	Gateway4      netip.Addr   `json:"gateway4,omitzero"`
	Routes        []Route      `json:"routes,omitzero"`
	MTU           int          `json:"mtu,omitempty"`
	Nameservers   []netip.Addr `json:"nameservers,omitzero"`
	SearchDomains []string     `json:"searchDomains,omitzero"`
}

// Route is a static route: the network To (host bits zero) through the
// gateway Via.
type Route struct {
	To  netip.Prefix `json:"to"`
	Via netip.Addr   `json:"via"`
	// Metric is the route's metric (MinRouteMetric..MaxRouteMetric): the
	// route priority on Linux, the route metric on Windows (which adds the
	// interface metric on top). Zero is absent: the OS default.
	Metric uint32 `json:"metric,omitempty"`
}

// Redact returns a deep copy of d with every plaintext password replaced by
// Redacted. d itself is not changed.
func (d *Document) Redact() *Document {
	c := d.Clone()
	for i := range c.Users {
		if c.Users[i].Password != "" {
			c.Users[i].Password = Redacted
		}
	}
	return c
}

// Clone returns a deep copy of d.
func (d *Document) Clone() *Document {
	if d == nil {
		return nil
	}
	c := *d
	c.SSHHostKeys = d.SSHHostKeys.clone()
	if d.UserData != nil {
		s := *d.UserData
		c.UserData = &s
	}
	if d.Users != nil {
		c.Users = make([]User, len(d.Users))
		for i, u := range d.Users {
			u.Groups = slices.Clone(u.Groups)
			u.SSHAuthorizedKeys = slices.Clone(u.SSHAuthorizedKeys)
			c.Users[i] = u
		}
	}
	if d.Network != nil {
		n := *d.Network
		if n.RenewDHCP != nil {
			v := *n.RenewDHCP
			n.RenewDHCP = &v
		}
		if n.Interfaces != nil {
			n.Interfaces = make([]Interface, len(d.Network.Interfaces))
			for i, in := range d.Network.Interfaces {
				in.Addresses = slices.Clone(in.Addresses)
				in.Nameservers = slices.Clone(in.Nameservers)
				in.SearchDomains = slices.Clone(in.SearchDomains)
				in.Routes = slices.Clone(in.Routes)
				n.Interfaces[i] = in
			}
		}
		c.Network = &n
	}
	return &c
}
