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

// ErrSharedAdminKeys is returned for an administrator with SSH keys on a
// machine whose sshd_config reads administrators_authorized_keys for every
// administrator (Windows' default "Match Group administrators" block).
var ErrSharedAdminKeys = errors.New("sshd_config reads administrators_authorized_keys for administrators")

// ensureKeys writes u's keys to %USERPROFILE%\.ssh\authorized_keys, an
// administrator's too, in a block named after the user, the file owned by
// Administrators with the user's read access (sddl.UserAuthorizedKeys).
//
// Never to %ProgramData%\ssh\administrators_authorized_keys: sshd accepts a
// key there for every administrator account, so one admin's keys would log
// on as every other (and as the built-in Administrator). A block an earlier
// agent wrote there is taken out. Where sshd_config still points
// administrators at that file (Windows' default), an administrator's keys
// in their own file are not used: the step fails for that user, naming the
// config line to remove (docs/windows.md), rather than grant them silently
// to every administrator or report keys that do not work.
func (m *userManager) ensureKeys(u config.User, sid *windows.SID, res *plan.Result) error {
	adminFile := rooted(m.root, filepath.Join(programData(), "ssh", "administrators_authorized_keys"))
	profile, err := profileDir(sid, u.Name)
	if err != nil {
		return err
	}
	userDir := rooted(m.root, filepath.Join(profile, ".ssh"))
	userFile := filepath.Join(userDir, "authorized_keys")
	fileSD, err := sddl.UserAuthorizedKeys(sid.String())
	if err != nil {
		return err
	}
	dirSD, err := sddl.UserSSHDir(sid.String())
	if err != nil {
		return err
	}
	if err := m.writeKeys(userFile, u.Name, u.SSHAuthorizedKeys, fileSD, userDir, dirSD, res); err != nil {
		return err
	}
	if err := m.writeKeys(adminFile, u.Name, nil, sddl.AdministratorsAuthorizedKeys(), "", sddl.Descriptor{}, res); err != nil {
		return err
	}
	if !plan.WantsAdmin(u) || len(u.SSHAuthorizedKeys) == 0 {
		return nil
	}
	cfgPath := rooted(m.root, filepath.Join(programData(), "ssh", "sshd_config"))
	cfg, err := os.ReadFile(cfgPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no OpenSSH server (yet): nothing reads the keys
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", cfgPath, err)
	}
	if line, shared := plan.SharedAdminKeys(cfg); shared {
		return fmt.Errorf("administrator %q: %s line %d (Match Group administrators) makes sshd read only administrators_authorized_keys, where a key logs on as every administrator; the agent wrote the keys to %s only, which this sshd ignores: remove that Match block from the image's sshd_config: %w",
			u.Name, cfgPath, line, userFile, ErrSharedAdminKeys)
	}
	return nil
}

// writeKeys sets owner's block of path to keys and gives the file the
// descriptor d. With no keys, a missing file stays missing. mkdir, when set,
// is created first if missing, with the descriptor dirSD (an existing one
// keeps its ACL: it is the user's).
func (m *userManager) writeKeys(path, owner string, keys []string, d sddl.Descriptor, mkdir string, dirSD sddl.Descriptor, res *plan.Result) error {
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
		if _, err := os.Stat(mkdir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(mkdir, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", mkdir, err)
			}
			if err := applySDDL(mkdir, dirSD); err != nil {
				return err
			}
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
