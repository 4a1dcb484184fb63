package plan

import (
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

// CheckUser rejects what Windows cannot do with a user of the document.
func CheckUser(u config.User) error {
	if u.PasswordHash != "" && u.Password == "" {
		return fmt.Errorf("user %q: passwordHash is Linux only; Windows needs password", u.Name)
	}
	return nil
}
