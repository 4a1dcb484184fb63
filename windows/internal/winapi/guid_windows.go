package winapi

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/windows"
)

// guidArgs returns the syscall arguments that pass g by value, as
// SetInterfaceDnsSettings and GetInterfaceDnsSettings take their GUID
// (`GUID Interface`, not a pointer). How a 16-byte struct travels by value
// depends on the calling convention: the x64 convention passes it by
// reference to a copy (one pointer argument), ARM64's in two registers
// (two 64-bit words) and x86's (and 32-bit ARM's) on the stack or in four
// registers (four 32-bit words). Passing &g everywhere, as this package
// did, is right on amd64 only: on arm64 the call would read the pointer
// and the next argument as the GUID. wireguard-windows' winipcfg does the
// same split (setInterfaceDnsSettingsByPtr/ByQwords/ByDwords).
func guidArgs(g *windows.GUID) []uintptr {
	return guidArgsFor(runtime.GOARCH, g)
}

func guidArgsFor(arch string, g *windows.GUID) []uintptr {
	if arch == "amd64" {
		return []uintptr{uintptr(unsafe.Pointer(g))}
	}
	// 16 bytes as native words: two on a 64-bit target, four on a 32-bit one.
	const word = unsafe.Sizeof(uintptr(0))
	words := unsafe.Slice((*uintptr)(unsafe.Pointer(g)), unsafe.Sizeof(*g)/word)
	return append([]uintptr(nil), words...)
}
