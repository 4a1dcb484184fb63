package platform

// These tests need no real Windows subsystem to change anything: they check
// pure helpers, validation that fails before any system call, and read-only
// queries. They run under Wine (windows/wine-test.sh) and compile in CI
// with GOOS=windows go test -exec=true.

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

func TestSockaddrRoundTrip(t *testing.T) {
	for _, s := range []string{"10.1.0.5", "0.0.0.0", "255.255.255.255", "192.168.7.1"} {
		ip := netip.MustParseAddr(s)
		sa := sockaddr4(ip)
		if sa.Family != windows.AF_INET {
			t.Fatalf("family %d", sa.Family)
		}
		// SOCKADDR_IN keeps the address in network byte order at offset 4.
		raw := (*[8]byte)(unsafe.Pointer(&sa))
		if got := netip.AddrFrom4([4]byte(raw[4:8])); got != ip {
			t.Errorf("address bytes %v; want %v", got, ip)
		}
		if got, ok := addrOf(&sa); !ok || got != ip {
			t.Errorf("addrOf = %v, %v; want %v", got, ok, ip)
		}
	}
	var v6 windows.RawSockaddrInet
	v6.Family = windows.AF_INET6
	if _, ok := addrOf(&v6); ok {
		t.Error("addrOf accepted an IPv6 sockaddr")
	}
}

func TestRows(t *testing.T) {
	a := adapter{Index: 7, LUID: 0x1234}
	p := netip.MustParsePrefix("10.1.0.5/24")
	u := unicastRow(a, p)
	if u.InterfaceLuid != 0x1234 || u.InterfaceIndex != 7 || u.OnLinkPrefixLength != 24 ||
		u.PrefixOrigin != winapi.IpPrefixOriginManual || u.ValidLifetime != winapi.InfiniteLifetime {
		t.Errorf("unicast row %+v", u)
	}
	if got, ok := addrOf((*windows.RawSockaddrInet)(unsafe.Pointer(&u.Address))); !ok || got != p.Addr() {
		t.Errorf("unicast row address %v", got)
	}
	r := forwardRow(a, plan.Route{To: plan.DefaultRoute, Via: netip.MustParseAddr("10.1.0.1")})
	if r.InterfaceLuid != 0x1234 || r.DestinationPrefix.PrefixLength != 0 || r.Protocol != windows.MIB_IPPROTO_NETMGMT {
		t.Errorf("forward row %+v", r)
	}
	if got, _ := addrOf(&r.NextHop); got != netip.MustParseAddr("10.1.0.1") {
		t.Errorf("next hop %v", got)
	}
}

func TestHostnameValidationFailsBeforeAnyChange(t *testing.T) {
	h := &hostnameSetter{log: testLogger(t)}
	res, err := h.ApplyHostname(context.Background(), "a-very-long-hostname.example")
	if !errors.Is(err, plan.ErrHostnameTooLong) || res.Changed {
		t.Errorf("ApplyHostname = %+v, %v; want ErrHostnameTooLong", res, err)
	}
}

func TestNewRejectsForeignDHCPClient(t *testing.T) {
	_, err := New(Options{DHCPClient: "dhclient", StateDir: tempDir(t)})
	if err == nil {
		t.Error("New accepted dhclient on Windows")
	}
}

func TestNetworkAbsentSectionIsNoChange(t *testing.T) {
	n := &networkConfigurator{stateDir: tempDir(t), log: testLogger(t)}
	res, err := n.ApplyNetwork(context.Background(), nil)
	if err != nil || res.Changed {
		t.Errorf("ApplyNetwork(nil) = %+v, %v", res, err)
	}
}

func TestRooted(t *testing.T) {
	if got := rooted("", `C:\ProgramData\ssh\x`); got != `C:\ProgramData\ssh\x` {
		t.Errorf("rooted without root = %s", got)
	}
	if got := rooted(`D:\scratch`, `C:\ProgramData\ssh\x`); got != `D:\scratch\ProgramData\ssh\x` {
		t.Errorf("rooted = %s", got)
	}
}

// TestReadOnlyQueries reads the adapters, the computer name and the
// adapter index map, changing nothing.
func TestReadOnlyQueries(t *testing.T) {
	as, err := adapters()
	if err != nil {
		t.Fatalf("adapters: %v", err)
	}
	for _, a := range as {
		t.Logf("adapter %d %q %s up=%v dhcp=%v mtu=%d managed=%v", a.Index, a.Name, a.MAC, a.Up, a.DHCP, a.MTU, managed(a, nil))
		if a.Type == windows.IF_TYPE_SOFTWARE_LOOPBACK && managed(a, nil) {
			t.Errorf("loopback %q is managed", a.Name)
		}
	}
	if name, err := computerName(windows.ComputerNamePhysicalDnsHostname); err != nil || name == "" {
		t.Errorf("computerName = %q, %v", name, err)
	}
	if _, err := winapi.AdapterIndexMaps(); err != nil {
		t.Logf("GetInterfaceInfo: %v", err)
	}
	if _, err := findAdapter("no-such-interface-xyz"); !errors.Is(err, errNoInterface) {
		t.Errorf("findAdapter of a missing interface: %v", err)
	}
}

func TestApplySDDL(t *testing.T) {
	p := filepath.Join(tempDir(t), "authorized_keys")
	if err := os.WriteFile(p, []byte("x\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := applySDDL(p, sddlAdminKeys()); err != nil {
		t.Skipf("SetNamedSecurityInfo unsupported here: %v", err)
	}
	sd, err := windows.GetNamedSecurityInfo(p, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Skipf("GetNamedSecurityInfo unsupported here: %v", err)
	}
	dacl := sd.String()
	want := "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
	if dacl != want {
		if isWine() {
			t.Skipf("Wine does not honour SetNamedSecurityInfo: read back %s, set %s", dacl, want)
		}
		t.Errorf("DACL read back %s; want %s", dacl, want)
	}
}
