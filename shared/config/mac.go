package config

import (
	"errors"
	"net"
)

// MAC is the 48-bit MAC address of a document's interface. Its zero value is
// no address. It is comparable, so it can key a map, and it encodes in the
// canonical form: lower-case hex pairs separated by colons
// (52:54:00:ab:cd:ef), whatever form net.ParseMAC read (upper case, dashes,
// Cisco dots).
type MAC struct {
	b  [6]byte
	ok bool
}

// errMAC is the rule a MAC breaks.
var errMAC = errors.New("must be a 48-bit MAC address like 52:54:00:12:34:56")

// ParseMAC parses a 48-bit MAC address in any form net.ParseMAC accepts.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, errMAC
	}
	return MACFrom(net.HardwareAddr(hw))
}

// MustParseMAC is ParseMAC for constants; it panics on a malformed MAC.
func MustParseMAC(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic("config.MustParseMAC(" + s + "): " + err.Error())
	}
	return m
}

// MACFrom returns hw as a MAC; hw must be 6 bytes long.
func MACFrom(hw net.HardwareAddr) (MAC, error) {
	if len(hw) != 6 {
		return MAC{}, errMAC
	}
	m := MAC{ok: true}
	copy(m.b[:], hw)
	return m, nil
}

// IsValid reports whether m holds an address (is not the zero MAC).
func (m MAC) IsValid() bool { return m.ok }

// HardwareAddr returns m as a net.HardwareAddr, nil for the zero MAC.
func (m MAC) HardwareAddr() net.HardwareAddr {
	if !m.ok {
		return nil
	}
	return append(net.HardwareAddr(nil), m.b[:]...)
}

// String returns m in canonical form, "" for the zero MAC.
func (m MAC) String() string {
	if !m.ok {
		return ""
	}
	return net.HardwareAddr(m.b[:]).String()
}

// MarshalText implements encoding.TextMarshaler: the canonical form, empty
// for the zero MAC.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. Empty text gives the
// zero MAC, as it does for netip.Addr.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = MAC{}
		return nil
	}
	v, err := ParseMAC(string(b))
	if err != nil {
		return &net.ParseError{Type: "48-bit MAC address", Text: string(b)}
	}
	*m = v
	return nil
}
