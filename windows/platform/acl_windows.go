package platform

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/windows/internal/sddl"
)

// applySDDL sets the owner and the protected DACL of path to d.
func applySDDL(path string, d sddl.Descriptor) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("security descriptor for %s: %w", path, err)
	}
	sd, err := windows.SecurityDescriptorFromString(d.String())
	if err != nil {
		return fmt.Errorf("parse %s: %w", d, err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("owner of %s: %w", d, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("DACL of %s: %w", d, err)
	}
	info := windows.SECURITY_INFORMATION(windows.OWNER_SECURITY_INFORMATION | windows.DACL_SECURITY_INFORMATION | windows.PROTECTED_DACL_SECURITY_INFORMATION)
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, info, owner, nil, dacl, nil); err != nil {
		return fmt.Errorf("set ACL of %s: %w", path, err)
	}
	return nil
}

// ensureStateDir creates the state directory readable by SYSTEM and
// Administrators only.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return applySDDL(dir, sddl.StateDir())
}
