package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/prewarm/prewarm/agent/atomicfile"
	"github.com/prewarm/prewarm/agent/authkeys"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/sddl"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

// ensureKeys writes u's keys where OpenSSH for Windows reads them: for an
// administrator %ProgramData%\ssh\administrators_authorized_keys (sshd's
// default "Match Group administrators" ignores the user's own file), else
// %USERPROFILE%\.ssh\authorized_keys. The keys sit in a block named after
// the user; the block is taken out of the other file, should the user have
// changed sides.
func (m *userManager) ensureKeys(u config.User, sid *windows.SID, res *plan.Result) error {
	adminFile := rooted(m.root, filepath.Join(programData(), "ssh", "administrators_authorized_keys"))
	profile, err := profileDir(sid, u.Name)
	if err != nil {
		return err
	}
	userDir := rooted(m.root, filepath.Join(profile, ".ssh"))
	userFile := filepath.Join(userDir, "authorized_keys")
	userSD, err := sddl.UserAuthorizedKeys(sid.String(), false)
	if err != nil {
		return err
	}
	if plan.WantsAdmin(u) {
		if err := m.writeKeys(adminFile, u.Name, u.SSHAuthorizedKeys, sddl.AdministratorsAuthorizedKeys(), "", res); err != nil {
			return err
		}
		return m.writeKeys(userFile, u.Name, nil, userSD, "", res)
	}
	dirSD, err := sddl.UserAuthorizedKeys(sid.String(), true)
	if err != nil {
		return err
	}
	if err := m.writeKeys(userFile, u.Name, u.SSHAuthorizedKeys, userSD, userDir, res); err != nil {
		return err
	}
	if err := applySDDL(userDir, dirSD); err != nil {
		return err
	}
	return m.writeKeys(adminFile, u.Name, nil, sddl.AdministratorsAuthorizedKeys(), "", res)
}

// writeKeys sets owner's block of path to keys and gives the file the
// descriptor d. With no keys, a missing file stays missing. mkdir, when set,
// is created first.
func (m *userManager) writeKeys(path, owner string, keys []string, d sddl.Descriptor, mkdir string, res *plan.Result) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err != nil && len(keys) == 0 {
		return nil
	}
	content, changed, err := authkeys.Set(old, owner, keys, "\r\n")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		// Still make sure of the ACL: sshd ignores a file with a wrong one.
		return applySDDL(path, d)
	}
	if mkdir != "" {
		if err := os.MkdirAll(mkdir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", mkdir, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	// The final ACL before the file takes its name.
	prepare := func(tmp string) error { return applySDDL(tmp, d) }
	if err := atomicfile.Write(path, content, atomicfile.Options{Mode: 0o600, Prepare: prepare}); err != nil {
		return err
	}
	m.log.Info("authorized keys written", "path", path, "user", owner, "keys", len(keys))
	if len(keys) == 0 {
		res.Did(fmt.Sprintf("remove SSH keys of %s from %s", owner, path), false)
	} else {
		res.Did(fmt.Sprintf("write %d SSH keys of %s to %s", len(keys), owner, path), false)
	}
	return nil
}

// profileDir returns the user's profile directory, creating the profile
// when the user never logged on.
func profileDir(sid *windows.SID, user string) (string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\`+sid.String(), registry.QUERY_VALUE)
	if err == nil {
		defer k.Close()
		p, _, err := k.GetStringValue("ProfileImagePath")
		if err == nil {
			return registry.ExpandString(p)
		}
	}
	p, err := winapi.CreateProfile(sid.String(), user)
	if err != nil {
		return "", fmt.Errorf("create profile of %q: %w", user, err)
	}
	return p, nil
}
