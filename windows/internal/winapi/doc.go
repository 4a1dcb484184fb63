// Package winapi declares the Win32 functions and structures the Windows
// platform needs that golang.org/x/sys/windows does not wrap (iphlpapi's
// address, route, DNS and DHCP calls, netapi32's user and group calls,
// SetComputerNameExW, userenv's CreateProfile). Each is resolved lazily from
// its system DLL, so a missing export (SetInterfaceDnsSettings before
// Windows 10 2004) is an error at call time, not a load failure. Its code
// is in _windows.go files; on other systems the package is empty.
package winapi
