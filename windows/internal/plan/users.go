package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prewarm/prewarm/shared/config"
)

// FirstUserRID is the lowest relative ID Windows gives an account an
// administrator created; built-in accounts (Administrator 500, Guest 501,
// DefaultAccount 503, WDAGUtilityAccount 504) lie below it.
const FirstUserRID = 1000

// IsSystemAccount reports whether an account with this RID is one of the
// machine's built-in accounts, which the agent must not manage.
func IsSystemAccount(rid uint32) bool { return rid < FirstUserRID }

// Errors of MayManage, the same rule as the Linux users step's.
var (
	// ErrSystemAccount: a built-in account, never managed.
	ErrSystemAccount = errors.New("system account")
	// ErrUnmanagedAccount: the account exists, the agent did not create
	// it and the image builder did not list it.
	ErrUnmanagedAccount = errors.New("account not created by the agent")
)

// MayManage decides whether the agent manages the existing local account
// name (its SID sid, whose last sub-authority is rid). A built-in account
// never, listed or not. Otherwise one the agent created: created maps the
// lower-cased names of those to their SID, "" while pending (recorded just
// before NetUserAdd, so an agent stopped in between still knows its
// account; MayManage completes such an entry with sid); or one the image
// builder listed in allow. Names compare without regard to case, as
// Windows compares them.
func MayManage(name, sid string, rid uint32, created map[string]string, allow []string) error {
	if IsSystemAccount(rid) {
		return fmt.Errorf("user %q: RID %d is a built-in account; refusing to manage it, listed or not: %w", name, rid, ErrSystemAccount)
	}
	key := strings.ToLower(name)
	if s, ok := created[key]; ok {
		switch s {
		case sid:
			return nil
		case "":
			created[key] = sid
			return nil
		}
	}
	for _, a := range allow {
		if strings.EqualFold(a, name) {
			return nil
		}
	}
	return fmt.Errorf("user %q exists (%s) and was not created by the agent; refusing to manage it (an image builder allows an existing account with --manage-existing-users): %w", name, sid, ErrUnmanagedAccount)
}

// WantsAdmin reports whether u belongs in the local Administrators group:
// any sudo level but "none".
func WantsAdmin(u config.User) bool { return u.SudoLevel() != config.SudoNone }

// Membership decides a user's Administrators membership. isMember is the
// current state; ownedByAgent says the agent made the user a member (its
// state file says so), so it may take the membership away again.
func Membership(u config.User, isMember, ownedByAgent bool) (add, remove bool) {
	want := WantsAdmin(u)
	return want && !isMember, !want && isMember && ownedByAgent
}

// Groups returns the extra local groups of u to ensure, without the Linux
// names that mean administration (sudo, wheel, admin, adm), which the sudo
// level covers on Windows, and without duplicates (case-insensitive, as
// Windows compares group names).
func Groups(u config.User) []string {
	skip := map[string]bool{"sudo": true, "wheel": true, "admin": true, "adm": true}
	seen := map[string]bool{}
	var out []string
	for _, g := range u.Groups {
		k := strings.ToLower(g)
		if skip[k] || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, g)
	}
	return out
}

// MaxUserNameLen is the longest local account name Windows takes (the SAM
// account name, sAMAccountName: 20 characters). The document allows 32.
const MaxUserNameLen = 20

// CheckUsers returns what Windows cannot do with the document's users, one
// field error each (path and rule), for the agent's check before it applies
// anything: a document with such a user fails whole, instead of half
// applied.
func CheckUsers(users []config.User) []config.FieldError {
	var out []config.FieldError
	for i, u := range users {
		p := fmt.Sprintf("users[%d]", i)
		if n := len(u.Name); n > MaxUserNameLen {
			out = append(out, config.FieldError{Path: p + ".name", Reason: fmt.Sprintf("%q is %d characters; a Windows account name has at most %d", u.Name, n, MaxUserNameLen)})
		}
		if u.PasswordHash != "" && u.Password == "" {
			out = append(out, config.FieldError{Path: p + ".passwordHash", Reason: "is Linux only; a Windows user needs password (or neither, for a key-only user)"})
		}
	}
	return out
}

// CheckUser rejects what Windows cannot do with a user of the document
// (CheckUsers' rules, again for a user that never went through the check).
func CheckUser(u config.User) error {
	if fe := CheckUsers([]config.User{u}); len(fe) > 0 {
		return fmt.Errorf("user %q: %s %s", u.Name, strings.TrimPrefix(fe[0].Path, "users[0]."), fe[0].Reason)
	}
	return nil
}
