package winapi

import (
	"testing"
	"unsafe"
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
