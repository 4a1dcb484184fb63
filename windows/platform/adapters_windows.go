package platform

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// ipAdapterDHCPEnabled is IP_ADAPTER_DHCP_ENABLED of IP_ADAPTER_ADDRESSES.
const ipAdapterDHCPEnabled = 0x4

// adapter is what the platform needs to know of one network adapter.
type adapter struct {
	Index   uint32
	LUID    uint64
	Name    string // friendly name (interface alias), e.g. "Ethernet"
	GUID    string // adapter name, "{...}"
	MAC     string // lower case, colon separated
	Type    uint32
	Up      bool
	DHCP    bool
	MTU     int
	Unicast []unicast // IPv4 addresses
	DNS     []netip.Addr
}

type unicast struct {
	Prefix netip.Prefix
	Manual bool // prefix origin manual: a static address
}

// adapters lists the IPv4 adapters of the machine.
func adapters() ([]adapter, error) {
	const flags = windows.GAA_FLAG_INCLUDE_GATEWAYS | windows.GAA_FLAG_SKIP_ANYCAST | windows.GAA_FLAG_SKIP_MULTICAST
	size := uint32(15000)
	var buf []byte
	for range 4 { // the list may grow between the calls
		buf = make([]byte, size)
		err := windows.GetAdaptersAddresses(windows.AF_INET, flags, 0, (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])), &size)
		if err == nil {
			break
		}
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			return nil, fmt.Errorf("GetAdaptersAddresses: %w", err)
		}
		buf = nil
	}
	if buf == nil {
		return nil, errors.New("GetAdaptersAddresses: adapter list kept growing")
	}
	var out []adapter
	for aa := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])); aa != nil; aa = aa.Next {
		a := adapter{
			Index: aa.IfIndex,
			LUID:  aa.Luid,
			Name:  windows.UTF16PtrToString(aa.FriendlyName),
			GUID:  windows.BytePtrToString(aa.AdapterName),
			MAC:   strings.ToLower(net.HardwareAddr(aa.PhysicalAddress[:aa.PhysicalAddressLength]).String()),
			Type:  aa.IfType,
			Up:    aa.OperStatus == windows.IfOperStatusUp,
			DHCP:  aa.Flags&ipAdapterDHCPEnabled != 0,
			MTU:   int(aa.Mtu),
		}
		for u := aa.FirstUnicastAddress; u != nil; u = u.Next {
			ip, ok := netip.AddrFromSlice(u.Address.IP())
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			a.Unicast = append(a.Unicast, unicast{
				Prefix: netip.PrefixFrom(ip.Unmap(), int(u.OnLinkPrefixLength)),
				Manual: u.PrefixOrigin == windows.IpPrefixOriginManual,
			})
		}
		for d := aa.FirstDnsServerAddress; d != nil; d = d.Next {
			if ip, ok := netip.AddrFromSlice(d.Address.IP()); ok {
				a.DNS = append(a.DNS, ip.Unmap())
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// managed reports whether the platform manages a: a physical-looking NIC
// (not loopback or a tunnel, with a MAC address), and one of names when
// names is set.
func managed(a adapter, names []string) bool {
	if a.Type == windows.IF_TYPE_SOFTWARE_LOOPBACK || a.Type == windows.IF_TYPE_TUNNEL || a.MAC == "" {
		return false
	}
	if names == nil {
		return true
	}
	for _, n := range names {
		if strings.EqualFold(n, a.Name) || strings.EqualFold(n, a.GUID) {
			return true
		}
	}
	return false
}

// findAdapter returns the adapter named iface (alias or GUID) or with MAC iface.
func findAdapter(iface string) (adapter, error) {
	as, err := adapters()
	if err != nil {
		return adapter{}, err
	}
	for _, a := range as {
		if strings.EqualFold(a.Name, iface) || strings.EqualFold(a.GUID, iface) || (a.MAC != "" && strings.EqualFold(a.MAC, iface)) {
			return a, nil
		}
	}
	return adapter{}, fmt.Errorf("interface %q: %w", iface, errNoInterface)
}

var errNoInterface = errors.New("no such interface")
