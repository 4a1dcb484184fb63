// Package platform assembles the Windows implementations of the agent's
// platform interfaces into one agent.Platform: link watching through
// NotifyIpInterfaceChange, DHCP renewal through IpRenewAddress (leaving a
// renewal Windows' own client just did alone), the computer name through
// SetComputerNameExW (reporting RebootRequired; the step is the agent's
// Rebooter, and refuses a name Windows cannot take before anything is
// applied), the time zone through
// tzutil (windows/timezone), local users through netapi32 with SSH keys in
// each user's own authorized_keys (never administrators_authorized_keys:
// docs/windows.md), and static network settings through
// iphlpapi. Its code is in _windows.go files; the decisions it takes live in
// the portable windows/internal/plan, where they are unit tested.
package platform
