package winapi

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	iphlpapi = windows.NewLazySystemDLL("iphlpapi.dll")
	netapi32 = windows.NewLazySystemDLL("netapi32.dll")
	kernel32 = windows.NewLazySystemDLL("kernel32.dll")
	userenv  = windows.NewLazySystemDLL("userenv.dll")

	procInitializeUnicastIpAddressEntry = iphlpapi.NewProc("InitializeUnicastIpAddressEntry")
	procCreateUnicastIpAddressEntry     = iphlpapi.NewProc("CreateUnicastIpAddressEntry")
	procDeleteUnicastIpAddressEntry     = iphlpapi.NewProc("DeleteUnicastIpAddressEntry")
	procInitializeIpForwardEntry        = iphlpapi.NewProc("InitializeIpForwardEntry")
	procCreateIpForwardEntry2           = iphlpapi.NewProc("CreateIpForwardEntry2")
	procDeleteIpForwardEntry2           = iphlpapi.NewProc("DeleteIpForwardEntry2")
	procSetIpForwardEntry2              = iphlpapi.NewProc("SetIpForwardEntry2")
	procSetIpInterfaceEntry             = iphlpapi.NewProc("SetIpInterfaceEntry")
	procInitializeIpInterfaceEntry      = iphlpapi.NewProc("InitializeIpInterfaceEntry")
	procSetInterfaceDnsSettings         = iphlpapi.NewProc("SetInterfaceDnsSettings")
	procGetInterfaceDnsSettings         = iphlpapi.NewProc("GetInterfaceDnsSettings")
	procFreeInterfaceDnsSettings        = iphlpapi.NewProc("FreeInterfaceDnsSettings")
	procIpRenewAddress                  = iphlpapi.NewProc("IpRenewAddress")
	procIpReleaseAddress                = iphlpapi.NewProc("IpReleaseAddress")
	procGetInterfaceInfo                = iphlpapi.NewProc("GetInterfaceInfo")

	procNetUserAdd              = netapi32.NewProc("NetUserAdd")
	procNetUserSetInfo          = netapi32.NewProc("NetUserSetInfo")
	procNetUserGetLocalGroups   = netapi32.NewProc("NetUserGetLocalGroups")
	procNetLocalGroupAddMembers = netapi32.NewProc("NetLocalGroupAddMembers")
	procNetLocalGroupDelMembers = netapi32.NewProc("NetLocalGroupDelMembers")

	procSetComputerNameExW = kernel32.NewProc("SetComputerNameExW")

	procCreateProfile = userenv.NewProc("CreateProfile")
)

// call runs a lazily resolved proc whose result is a Win32 error code
// (NO_ERROR on success), the convention of iphlpapi and netapi32.
func call(p *windows.LazyProc, args ...uintptr) error {
	if err := p.Find(); err != nil {
		return err
	}
	r, _, _ := syscall.SyscallN(p.Addr(), args...)
	if r != 0 {
		return syscall.Errno(r)
	}
	return nil
}

// Available reports whether the proc named exists on this system.
func Available(name string) bool {
	for _, p := range []*windows.LazyProc{procSetInterfaceDnsSettings, procGetInterfaceDnsSettings} {
		if p.Name == name {
			return p.Find() == nil
		}
	}
	return false
}

// Constants of the structures below.
const (
	IpDadStatePreferred     = 4
	IpPrefixOriginManual    = 1
	IpSuffixOriginManual    = 1
	InfiniteLifetime        = 0xffffffff
	MaxAdapterName          = 128
	ComputerNamePhysicalDns = 5 // ComputerNamePhysicalDnsHostname

	UF_SCRIPT             = 0x0001
	UF_NORMAL_ACCOUNT     = 0x0200
	UF_DONT_EXPIRE_PASSWD = 0x10000
	USER_PRIV_USER        = 1
	LG_INCLUDE_INDIRECT   = 1
	MAX_PREFERRED_LENGTH  = 0xffffffff

	NERR_UserExists         = 2224
	NERR_UserNotFound       = 2221
	NERR_GroupNotFound      = 2220
	ERROR_NO_SUCH_ALIAS     = 1376
	ERROR_MEMBER_NOT_IN_ALI = 1377
	ERROR_MEMBER_IN_ALIAS   = 1378

	DNS_INTERFACE_SETTINGS_VERSION1 = 1
	DNS_SETTING_IPV6                = 0x0001
	DNS_SETTING_NAMESERVER          = 0x0002
	DNS_SETTING_SEARCHLIST          = 0x0004
)

// UserInfo1 is USER_INFO_1.
type UserInfo1 struct {
	Name        *uint16
	Password    *uint16
	PasswordAge uint32
	Priv        uint32
	HomeDir     *uint16
	Comment     *uint16
	Flags       uint32
	ScriptPath  *uint16
}

// UserInfo1003 is USER_INFO_1003: a new password.
type UserInfo1003 struct {
	Password *uint16
}

// LocalGroupMembersInfo3 is LOCALGROUP_MEMBERS_INFO_3.
type LocalGroupMembersInfo3 struct {
	DomainAndName *uint16
}

// IPAdapterIndexMap is IP_ADAPTER_INDEX_MAP.
type IPAdapterIndexMap struct {
	Index uint32
	Name  [MaxAdapterName]uint16
}

// DNSInterfaceSettings is DNS_INTERFACE_SETTINGS (version 1).
type DNSInterfaceSettings struct {
	Version             uint32
	Flags               uint64
	Domain              *uint16
	NameServer          *uint16
	SearchList          *uint16
	RegistrationEnabled uint32
	RegisterAdapterName uint32
	EnableLLMNR         uint32
	QueryAdapterName    uint32
	ProfileNameServer   *uint16
}

// initRow calls an Initialize*Entry procedure, which fills a row with its
// defaults and returns nothing, when the DLL has it.
func initRow[T any](p *windows.LazyProc, row *T) {
	if p.Find() == nil {
		syscall.SyscallN(p.Addr(), uintptr(unsafe.Pointer(row)))
	}
}

// InitializeUnicastIpAddressEntry fills row with defaults.
func InitializeUnicastIpAddressEntry(row *windows.MibUnicastIpAddressRow) {
	initRow(procInitializeUnicastIpAddressEntry, row)
}

// CreateUnicastIpAddressEntry adds an address.
func CreateUnicastIpAddressEntry(row *windows.MibUnicastIpAddressRow) error {
	return call(procCreateUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

// DeleteUnicastIpAddressEntry removes an address.
func DeleteUnicastIpAddressEntry(row *windows.MibUnicastIpAddressRow) error {
	return call(procDeleteUnicastIpAddressEntry, uintptr(unsafe.Pointer(row)))
}

// InitializeIpForwardEntry fills row with defaults.
func InitializeIpForwardEntry(row *windows.MibIpForwardRow2) {
	initRow(procInitializeIpForwardEntry, row)
}

// CreateIpForwardEntry2 adds a route.
func CreateIpForwardEntry2(row *windows.MibIpForwardRow2) error {
	return call(procCreateIpForwardEntry2, uintptr(unsafe.Pointer(row)))
}

// DeleteIpForwardEntry2 removes a route.
func DeleteIpForwardEntry2(row *windows.MibIpForwardRow2) error {
	return call(procDeleteIpForwardEntry2, uintptr(unsafe.Pointer(row)))
}

// SetIpForwardEntry2 changes the properties (the metric among them) of the
// route with row's interface, destination and next hop.
func SetIpForwardEntry2(row *windows.MibIpForwardRow2) error {
	return call(procSetIpForwardEntry2, uintptr(unsafe.Pointer(row)))
}

// InitializeIpInterfaceEntry fills row with defaults.
func InitializeIpInterfaceEntry(row *windows.MibIpInterfaceRow) {
	initRow(procInitializeIpInterfaceEntry, row)
}

// SetIpInterfaceEntry changes an interface's IP settings (MTU).
func SetIpInterfaceEntry(row *windows.MibIpInterfaceRow) error {
	return call(procSetIpInterfaceEntry, uintptr(unsafe.Pointer(row)))
}

// SetInterfaceDnsSettings sets the DNS settings of the interface guid,
// which the procedure takes by value (guidArgs).
func SetInterfaceDnsSettings(guid windows.GUID, s *DNSInterfaceSettings) error {
	return call(procSetInterfaceDnsSettings, append(guidArgs(&guid), uintptr(unsafe.Pointer(s)))...)
}

// GetInterfaceDnsSettings reads them; FreeInterfaceDnsSettings frees s's
// strings afterwards.
func GetInterfaceDnsSettings(guid windows.GUID, s *DNSInterfaceSettings) error {
	return call(procGetInterfaceDnsSettings, append(guidArgs(&guid), uintptr(unsafe.Pointer(s)))...)
}

// FreeInterfaceDnsSettings frees what GetInterfaceDnsSettings allocated.
func FreeInterfaceDnsSettings(s *DNSInterfaceSettings) {
	if procFreeInterfaceDnsSettings.Find() == nil {
		syscall.SyscallN(procFreeInterfaceDnsSettings.Addr(), uintptr(unsafe.Pointer(s)))
	}
}

// IpRenewAddress renews the DHCP lease of an adapter; it returns when the
// renewal is done.
func IpRenewAddress(m *IPAdapterIndexMap) error {
	return call(procIpRenewAddress, uintptr(unsafe.Pointer(m)))
}

// IpReleaseAddress releases the DHCP lease of an adapter (a DHCPRELEASE
// to its server; the adapter keeps no address until IpRenewAddress).
func IpReleaseAddress(m *IPAdapterIndexMap) error {
	return call(procIpReleaseAddress, uintptr(unsafe.Pointer(m)))
}

// AdapterIndexMaps returns GetInterfaceInfo's adapters.
func AdapterIndexMaps() ([]IPAdapterIndexMap, error) {
	var size uint32
	err := call(procGetInterfaceInfo, 0, uintptr(unsafe.Pointer(&size)))
	if err != nil && err != windows.ERROR_INSUFFICIENT_BUFFER {
		return nil, err
	}
	for range 3 { // the table may grow between the calls
		buf := make([]byte, size+4)
		err = call(procGetInterfaceInfo, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)))
		if err == windows.ERROR_INSUFFICIENT_BUFFER {
			continue
		}
		if err != nil {
			return nil, err
		}
		// IP_INTERFACE_INFO: LONG NumAdapters, then the maps (4-aligned).
		n := int(*(*int32)(unsafe.Pointer(&buf[0])))
		maps := unsafe.Slice((*IPAdapterIndexMap)(unsafe.Pointer(&buf[4])), n)
		return append([]IPAdapterIndexMap(nil), maps...), nil
	}
	return nil, err
}

// NetUserAdd creates a local user from a USER_INFO_1.
func NetUserAdd(u *UserInfo1) error {
	var parmErr uint32
	return call(procNetUserAdd, 0, 1, uintptr(unsafe.Pointer(u)), uintptr(unsafe.Pointer(&parmErr)))
}

// NetUserSetPassword sets a local user's password (USER_INFO_1003).
func NetUserSetPassword(name *uint16, pw *uint16) error {
	info := UserInfo1003{Password: pw}
	var parmErr uint32
	return call(procNetUserSetInfo, 0, uintptr(unsafe.Pointer(name)), 1003, uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&parmErr)))
}

// NetUserLocalGroups returns the local groups name belongs to.
func NetUserLocalGroups(name string) ([]string, error) {
	n, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	var buf *byte
	var read, total uint32
	err = call(procNetUserGetLocalGroups, 0, uintptr(unsafe.Pointer(n)), 0, LG_INCLUDE_INDIRECT,
		uintptr(unsafe.Pointer(&buf)), MAX_PREFERRED_LENGTH, uintptr(unsafe.Pointer(&read)), uintptr(unsafe.Pointer(&total)))
	if buf != nil {
		defer windows.NetApiBufferFree(buf)
	}
	if err != nil {
		return nil, err
	}
	// LOCALGROUP_USERS_INFO_0: one LPWSTR each.
	ptrs := unsafe.Slice((**uint16)(unsafe.Pointer(buf)), read)
	groups := make([]string, 0, read)
	for _, p := range ptrs {
		groups = append(groups, windows.UTF16PtrToString(p))
	}
	return groups, nil
}

// NetLocalGroupAddMember adds member ("MACHINE\name" or "name") to group.
func NetLocalGroupAddMember(group, member string) error {
	return groupMember(procNetLocalGroupAddMembers, group, member)
}

// NetLocalGroupDelMember removes member from group.
func NetLocalGroupDelMember(group, member string) error {
	return groupMember(procNetLocalGroupDelMembers, group, member)
}

func groupMember(p *windows.LazyProc, group, member string) error {
	g, err := windows.UTF16PtrFromString(group)
	if err != nil {
		return err
	}
	m, err := windows.UTF16PtrFromString(member)
	if err != nil {
		return err
	}
	info := LocalGroupMembersInfo3{DomainAndName: m}
	return call(p, 0, uintptr(unsafe.Pointer(g)), 3, uintptr(unsafe.Pointer(&info)), 1)
}

// SetComputerNameEx sets the computer name of the given type; it takes
// effect at the next restart.
func SetComputerNameEx(nameType uint32, name string) error {
	n, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	if err := procSetComputerNameExW.Find(); err != nil {
		return err
	}
	r, _, e := syscall.SyscallN(procSetComputerNameExW.Addr(), uintptr(nameType), uintptr(unsafe.Pointer(n)))
	if r == 0 {
		return e
	}
	return nil
}

// CreateProfile creates the profile of the account sid (a string SID) and
// returns its directory. An existing profile gives ERROR_ALREADY_EXISTS.
func CreateProfile(sid, user string) (string, error) {
	s, err := windows.UTF16PtrFromString(sid)
	if err != nil {
		return "", err
	}
	u, err := windows.UTF16PtrFromString(user)
	if err != nil {
		return "", err
	}
	if err := procCreateProfile.Find(); err != nil {
		return "", err
	}
	buf := make([]uint16, windows.MAX_PATH)
	r, _, _ := syscall.SyscallN(procCreateProfile.Addr(), uintptr(unsafe.Pointer(s)), uintptr(unsafe.Pointer(u)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if r != 0 { // HRESULT
		return "", syscall.Errno(r & 0xffff)
	}
	return windows.UTF16ToString(buf), nil
}
