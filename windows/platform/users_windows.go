package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/windows"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/state"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

type userManager struct {
	root, stateDir string
	// manageExisting are the accounts that existed before the agent that
	// the image builder lets it manage (Options.ManageExistingUsers).
	manageExisting []string
	log            *slog.Logger
}

// usersRecord is what the agent remembers of the users it manages.
type usersRecord struct {
	// Admins are the users the agent added to Administrators: only those
	// it may take out again.
	Admins []string `json:"admins,omitempty"`
	// Passwords are verifiers (salted scrypt) of the passwords the agent
	// set, so setting the same one again is no change. Never the password.
	Passwords map[string]string `json:"passwords,omitempty"`
	// Created are the accounts the agent created: lower-cased name to
	// SID, "" while NetUserAdd runs (plan.MayManage).
	Created map[string]string `json:"created,omitempty"`
}

// ApplyUsers ensures every listed user. One user's failure does not stop
// the others; the error names every user that failed.
func (m *userManager) ApplyUsers(ctx context.Context, users []config.User) (agent.StepResult, error) {
	var res plan.Result
	recPath := filepath.Join(m.stateDir, "users.json")
	var rec usersRecord
	if err := state.Load(recPath, &rec); err != nil {
		return res.StepResult(), err
	}
	if rec.Passwords == nil {
		rec.Passwords = map[string]string{}
	}
	if rec.Created == nil {
		rec.Created = map[string]string{}
	}
	admins, err := administratorsGroup()
	if err != nil {
		return res.StepResult(), err
	}
	var errs []error
	for _, u := range users {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := m.ensure(u, admins, recPath, &rec, &res); err != nil {
			m.log.Warn("user failed", "user", u.Name, "err", err)
			errs = append(errs, err)
		}
	}
	if err := state.Save(recPath, rec); err != nil {
		errs = append(errs, err)
	}
	return res.StepResult(), errors.Join(errs...)
}

// CheckDocument refuses the users Windows cannot have (names over 20
// characters, a passwordHash alone) before the agent applies anything.
func (m *userManager) CheckDocument(doc *config.Document) []config.FieldError {
	return plan.CheckUsers(doc.Users)
}

// administratorsGroup returns the (localized) name of BUILTIN\Administrators.
func administratorsGroup() (string, error) {
	sid, err := windows.CreateWellKnownSid(windows.WinBuiltinAdministratorsSid)
	if err != nil {
		return "", fmt.Errorf("SID of the Administrators group: %w", err)
	}
	name, _, _, err := sid.LookupAccount("")
	if err != nil {
		return "", fmt.Errorf("name of the Administrators group: %w", err)
	}
	return name, nil
}

// lookupUser returns the SID of the local user name, nil if there is none,
// and an error for a name that is not a user or is a built-in account.
// Whether the agent may manage an account it returns is plan.MayManage's
// decision. The name is looked up as MACHINE\name: on a domain member a
// bare name may resolve to the domain's account of that name, which the
// local NetUser* calls do not touch.
func lookupUser(name string) (*windows.SID, error) {
	machine, err := computerName(windows.ComputerNameNetBIOS)
	if err != nil {
		return nil, fmt.Errorf("look up %q: this computer's name: %w", name, err)
	}
	sid, domain, typ, err := windows.LookupSID("", machine+`\`+name)
	if errors.Is(err, windows.ERROR_NONE_MAPPED) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %q: %w", machine+`\`+name, err)
	}
	if !strings.EqualFold(domain, machine) {
		return nil, fmt.Errorf("%q resolves to an account of %q, not of this computer %q", name, domain, machine)
	}
	if typ != windows.SidTypeUser {
		return nil, fmt.Errorf("%q exists and is not a user account", name)
	}
	if n := sid.SubAuthorityCount(); n > 0 && plan.IsSystemAccount(sid.SubAuthority(uint32(n)-1)) {
		return nil, fmt.Errorf("%q is a built-in system account", name)
	}
	return sid, nil
}

func (m *userManager) ensure(u config.User, admins, recPath string, rec *usersRecord, res *plan.Result) error {
	if err := plan.CheckUser(u); err != nil {
		return err
	}
	sid, err := lookupUser(u.Name)
	if err != nil {
		return fmt.Errorf("user %q: %w", u.Name, err)
	}
	if sid != nil {
		rid := uint32(0)
		if n := sid.SubAuthorityCount(); n > 0 {
			rid = sid.SubAuthority(uint32(n) - 1)
		}
		if err := plan.MayManage(u.Name, sid.String(), rid, rec.Created, m.manageExisting); err != nil {
			return err
		}
	}
	// The plaintext password lives in these two buffers only while needed;
	// both are zeroed when ensure returns. (The Go string in the document
	// cannot be zeroed; the agent drops the document after applying it.)
	var pw16 []uint16
	var pwBytes []byte
	if u.Password != "" {
		if pw16, err = windows.UTF16FromString(u.Password); err != nil {
			return fmt.Errorf("user %q: password contains NUL", u.Name)
		}
		pwBytes = []byte(u.Password)
	}
	// A closure: the buffers may be replaced below (a random password).
	defer func() {
		clear(pw16)
		clear(pwBytes)
	}()
	// A new user without a password (SSH keys only) gets a random one:
	// the default policy refuses an account without. Nobody knows it: it is
	// set, zeroed, and neither logged nor stored (no verifier either).
	random := false
	if sid == nil && pw16 == nil {
		if pwBytes, err = plan.RandomPassword(nil, u.Name); err != nil {
			return fmt.Errorf("create user %q: %w", u.Name, err)
		}
		// ASCII: one UTF-16 unit a byte, NUL-terminated, and no Go
		// string copy that could not be zeroed.
		pw16 = make([]uint16, len(pwBytes)+1)
		for i, c := range pwBytes {
			pw16[i] = uint16(c)
		}
		random = true
	}

	name16, err := windows.UTF16PtrFromString(u.Name)
	if err != nil {
		return fmt.Errorf("user %q: %w", u.Name, err)
	}
	if sid == nil {
		info := winapi.UserInfo1{
			Name:  name16,
			Priv:  winapi.USER_PRIV_USER,
			Flags: winapi.UF_SCRIPT | winapi.UF_NORMAL_ACCOUNT | winapi.UF_DONT_EXPIRE_PASSWD,
		}
		if pw16 != nil {
			info.Password = &pw16[0]
		}
		// Recorded before it exists, completed once it does.
		key := strings.ToLower(u.Name)
		rec.Created[key] = ""
		if err := state.Save(recPath, rec); err != nil {
			return fmt.Errorf("create user %q: record it first: %w", u.Name, err)
		}
		if err := winapi.NetUserAdd(&info); err != nil {
			delete(rec.Created, key)
			return fmt.Errorf("create user %q: %w", u.Name, err)
		}
		if random {
			m.log.Info("user created with a random password (SSH keys only)", "user", u.Name)
			res.Did(fmt.Sprintf("create user %s (SSH keys only: a random password nobody knows)", u.Name), false)
		} else {
			m.log.Info("user created", "user", u.Name)
			res.Did(fmt.Sprintf("create user %s", u.Name), false)
		}
		if pw16 != nil && !random {
			if v, err := state.NewVerifier(pwBytes); err == nil {
				rec.Passwords[u.Name] = v
			}
		}
		if sid, err = lookupUser(u.Name); err != nil {
			return fmt.Errorf("user %q after creating it: %w", u.Name, err)
		} else if sid == nil {
			return fmt.Errorf("user %q: created, but LookupAccountName does not find it", u.Name)
		}
		rec.Created[key] = sid.String()
	} else if pw16 != nil && !state.Matches(rec.Passwords[u.Name], pwBytes) {
		if err := winapi.NetUserSetPassword(name16, &pw16[0]); err != nil {
			return fmt.Errorf("set password of %q: %w", u.Name, err)
		}
		m.log.Info("password set", "user", u.Name)
		res.Did(fmt.Sprintf("set password of %s", u.Name), false)
		v, err := state.NewVerifier(pwBytes)
		if err != nil {
			return fmt.Errorf("user %q: password verifier: %w", u.Name, err)
		}
		rec.Passwords[u.Name] = v
	}

	groups, err := winapi.NetUserLocalGroups(u.Name)
	if err != nil {
		return fmt.Errorf("groups of %q: %w", u.Name, err)
	}
	isMember := containsFold(groups, admins)
	add, remove := plan.Membership(u, isMember, slices.Contains(rec.Admins, u.Name))
	switch {
	case add:
		if err := winapi.NetLocalGroupAddMember(admins, u.Name); err != nil && !errors.Is(err, windows.Errno(winapi.ERROR_MEMBER_IN_ALIAS)) {
			return fmt.Errorf("add %q to %s: %w", u.Name, admins, err)
		}
		rec.Admins = append(rec.Admins, u.Name)
		res.Did(fmt.Sprintf("add %s to %s", u.Name, admins), false)
	case remove:
		if err := winapi.NetLocalGroupDelMember(admins, u.Name); err != nil && !errors.Is(err, windows.Errno(winapi.ERROR_MEMBER_NOT_IN_ALI)) {
			return fmt.Errorf("remove %q from %s: %w", u.Name, admins, err)
		}
		rec.Admins = slices.DeleteFunc(rec.Admins, func(n string) bool { return n == u.Name })
		res.Did(fmt.Sprintf("remove %s from %s", u.Name, admins), false)
	case plan.WantsAdmin(u) && isMember && !slices.Contains(rec.Admins, u.Name):
		// An administrator before the agent came: stays one, not ours.
	}
	for _, g := range plan.Groups(u) {
		if containsFold(groups, g) {
			continue
		}
		err := winapi.NetLocalGroupAddMember(g, u.Name)
		switch {
		case errors.Is(err, windows.Errno(winapi.ERROR_NO_SUCH_ALIAS)), errors.Is(err, windows.Errno(winapi.NERR_GroupNotFound)):
			// Documents are often written for Linux ("docker", "video"):
			// a group this machine lacks is skipped, not created.
			m.log.Warn("local group does not exist; skipped", "user", u.Name, "group", g)
		case err != nil && !errors.Is(err, windows.Errno(winapi.ERROR_MEMBER_IN_ALIAS)):
			return fmt.Errorf("add %q to %q: %w", u.Name, g, err)
		default:
			res.Did(fmt.Sprintf("add %s to %s", u.Name, g), false)
		}
	}
	if u.SSHAuthorizedKeys != nil {
		if err := m.ensureKeys(u, sid, res); err != nil {
			return fmt.Errorf("SSH keys of %q: %w", u.Name, err)
		}
	}
	return nil
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
