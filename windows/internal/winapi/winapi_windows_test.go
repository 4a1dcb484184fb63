package winapi

import (
	"encoding/binary"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// TestLayouts pins the sizes of the structures passed to Win32 to those of
// the SDK headers on amd64 (and arm64, which lays them out alike).
func TestLayouts(t *testing.T) {
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"USER_INFO_1", unsafe.Sizeof(UserInfo1{}), 56},
		{"USER_INFO_1003", unsafe.Sizeof(UserInfo1003{}), 8},
		{"LOCALGROUP_MEMBERS_INFO_3", unsafe.Sizeof(LocalGroupMembersInfo3{}), 8},
		{"IP_ADAPTER_INDEX_MAP", unsafe.Sizeof(IPAdapterIndexMap{}), 260},
		{"DNS_INTERFACE_SETTINGS", unsafe.Sizeof(DNSInterfaceSettings{}), 64},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("sizeof(%s) = %d; want %d", tt.name, tt.got, tt.want)
		}
	}
	if off := unsafe.Offsetof(DNSInterfaceSettings{}.Flags); off != 8 {
		t.Errorf("DNS_INTERFACE_SETTINGS.Flags at %d; want 8", off)
	}
}

func TestAvailable(t *testing.T) {
	if Available("NoSuchProc") {
		t.Error("Available reports an unknown proc")
	}
	// GetInterfaceInfo exists on every supported Windows (and Wine).
	if _, err := AdapterIndexMaps(); err != nil {
		t.Logf("GetInterfaceInfo: %v", err)
	}
}

// TestGUIDArgs: the GUID the DNS settings procedures take by value goes as
// a pointer on amd64 only; on arm64 as its two 64-bit halves, in memory
// order (little-endian), which the build for arm64 uses (make lint builds
// it for arm64; no arm64 machine runs it here or in CI).
func TestGUIDArgs(t *testing.T) {
	g, err := windows.GUIDFromString("{01234567-89ab-cdef-0011-223344556677}")
	if err != nil {
		t.Fatal(err)
	}
	if a := guidArgsFor("amd64", &g); len(a) != 1 || a[0] != uintptr(unsafe.Pointer(&g)) {
		t.Errorf("amd64: %#x; want the GUID's address", a)
	}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		a := guidArgsFor("arm64", &g)
		b := (*[16]byte)(unsafe.Pointer(&g))
		want := []uintptr{uintptr(binary.LittleEndian.Uint64(b[:8])), uintptr(binary.LittleEndian.Uint64(b[8:]))}
		if !slices.Equal(a, want) {
			t.Errorf("arm64: %#x; want %#x", a, want)
		}
		// Data1 0x01234567 is the low half of the first word.
		if a[0]&0xffffffff != 0x01234567 {
			t.Errorf("arm64 first word %#x: Data1 is not its low 32 bits", a[0])
		}
	}
	if got := guidArgs(&g); !slices.Equal(got, guidArgsFor(runtime.GOARCH, &g)) {
		t.Errorf("guidArgs on %s = %#x", runtime.GOARCH, got)
	}
}
