package platform

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
)

// The hostname step is the agent's Rebooter (agent/reboot.go): Windows
// applies a computer name at the next boot, and a document with "reboot":
// "allowed" has the agent restart the machine once for it.

// bootIDKey holds BootId, a counter Windows (8 and later, Server 2012 and
// later) raises at every boot.
const bootIDKey = `SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management\PrefetchParameters`

var procGetTickCount64 = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetTickCount64")

// BootID is the registry's boot counter; where it is missing (Wine), the
// boot time to 10 s (now less the milliseconds since boot).
func (h *hostnameSetter) BootID() (string, error) {
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, bootIDKey, registry.QUERY_VALUE); err == nil {
		v, _, err := k.GetIntegerValue("BootId")
		k.Close()
		if err == nil {
			return "boot-" + strconv.FormatUint(v, 10), nil
		}
	}
	if err := procGetTickCount64.Find(); err != nil {
		return "", fmt.Errorf("no BootId in HKLM\\%s and no GetTickCount64: %w", bootIDKey, err)
	}
	ms, _, _ := procGetTickCount64.Call()
	boot := time.Now().Add(-time.Duration(ms) * time.Millisecond).Truncate(10 * time.Second)
	return "booted-" + boot.UTC().Format(time.RFC3339), nil
}

// Reboot restarts the machine at once (InitiateSystemShutdownExW, no
// grace period, applications closed: the document allowed the restart), as
// a planned application reconfiguration in the event log's shutdown reason.
// The service is stopped by the shutdown.
func (h *hostnameSetter) Reboot(ctx context.Context, reason string) error {
	if err := enableShutdownPrivilege(); err != nil {
		return err
	}
	msg, err := windows.UTF16PtrFromString(reason)
	if err != nil {
		return fmt.Errorf("restart reason: %w", err)
	}
	code := uint32(windows.SHTDN_REASON_MAJOR_APPLICATION | windows.SHTDN_REASON_MINOR_RECONFIG | windows.SHTDN_REASON_FLAG_PLANNED)
	if err := windows.InitiateSystemShutdownEx(nil, msg, 0, true, true, code); err != nil {
		return fmt.Errorf("restart the machine (InitiateSystemShutdownEx): %w", err)
	}
	h.log.Info("restart requested", "reason", reason)
	return nil
}

// enableShutdownPrivilege enables SeShutdownPrivilege in the process token:
// LocalSystem holds it, disabled.
func enableShutdownPrivilege() error {
	var tok windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_ADJUST_PRIVILEGES|windows.TOKEN_QUERY, &tok); err != nil {
		return fmt.Errorf("open the process token: %w", err)
	}
	defer tok.Close()
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, windows.StringToUTF16Ptr("SeShutdownPrivilege"), &luid); err != nil {
		return fmt.Errorf("look up SeShutdownPrivilege: %w", err)
	}
	tp := windows.Tokenprivileges{PrivilegeCount: 1}
	tp.Privileges[0] = windows.LUIDAndAttributes{Luid: luid, Attributes: windows.SE_PRIVILEGE_ENABLED}
	// A token without the privilege "succeeds" here (ERROR_NOT_ALL_ASSIGNED
	// is only the last error); InitiateSystemShutdownEx then fails with
	// ERROR_PRIVILEGE_NOT_HELD, which the caller reports.
	if err := windows.AdjustTokenPrivileges(tok, false, &tp, uint32(unsafe.Sizeof(tp)), nil, nil); err != nil {
		return fmt.Errorf("enable SeShutdownPrivilege: %w", err)
	}
	return nil
}

// CheckDocument refuses a hostname Windows cannot take as a computer name
// (first label over 15 characters, all digits) before the agent applies
// anything.
func (h *hostnameSetter) CheckDocument(doc *config.Document) []config.FieldError {
	if doc.Hostname == "" {
		return nil
	}
	if _, err := plan.ComputerName(doc.Hostname); err != nil {
		return []config.FieldError{{Path: "hostname", Reason: plan.ComputerNameRule(doc.Hostname, err)}}
	}
	return nil
}
