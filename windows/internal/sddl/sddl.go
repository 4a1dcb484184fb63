package sddl

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Well-known SID abbreviations of SDDL.
const (
	System         = "SY" // NT AUTHORITY\SYSTEM
	Administrators = "BA" // BUILTIN\Administrators
	Users          = "BU" // BUILTIN\Users
)

// Access masks.
const (
	FullAccess = "FA"
	// ReadExecute is FILE_GENERIC_READ | FILE_GENERIC_EXECUTE (0x1200a9):
	// list, read and traverse, nothing more.
	ReadExecute = "0x1200a9"
)

// Inheritance flags of an ACE.
const (
	NoInherit        = ""
	ObjectAndContain = "OICI" // files and subdirectories inherit it
)

// ErrBadSID is returned for a trustee that is neither a known abbreviation
// nor a literal SID.
var ErrBadSID = errors.New("invalid SID")

var sidRE = regexp.MustCompile(`^S-1-[0-9]+(-[0-9]+)+$`)

var abbreviations = map[string]bool{System: true, Administrators: true, Users: true, "OW": true, "CO": true}

// CheckSID accepts an SDDL abbreviation this package uses or a literal SID
// (S-1-5-21-...).
func CheckSID(sid string) error {
	if abbreviations[sid] || sidRE.MatchString(sid) {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrBadSID, sid)
}

// ACE is one access-allowed entry.
type ACE struct {
	Inherit string // NoInherit or ObjectAndContain
	Rights  string // FullAccess, ReadExecute or a 0x mask
	SID     string
}

// Descriptor is an owner and a protected (non-inheriting) DACL.
type Descriptor struct {
	Owner string
	DACL  []ACE
}

// String renders d as SDDL: "O:<owner>D:P(A;<inherit>;<rights>;;;<sid>)...".
// The DACL is always protected ("P"): these files must not pick up whatever
// their parent directory grants, which is what OpenSSH checks for.
func (d Descriptor) String() string {
	var b strings.Builder
	b.WriteString("O:")
	b.WriteString(d.Owner)
	b.WriteString("D:P")
	for _, a := range d.DACL {
		fmt.Fprintf(&b, "(A;%s;%s;;;%s)", a.Inherit, a.Rights, a.SID)
	}
	return b.String()
}

// Validate checks every SID of d.
func (d Descriptor) Validate() error {
	if err := CheckSID(d.Owner); err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	if len(d.DACL) == 0 {
		return errors.New("empty DACL would deny everyone")
	}
	for i, a := range d.DACL {
		if err := CheckSID(a.SID); err != nil {
			return fmt.Errorf("ACE %d: %w", i, err)
		}
		if a.Inherit != NoInherit && a.Inherit != ObjectAndContain {
			return fmt.Errorf("ACE %d: inheritance %q", i, a.Inherit)
		}
	}
	return nil
}

// ProgramDataDir is the descriptor of %ProgramData%\Prewarm: SYSTEM and
// Administrators may change it, Users may read the status log there.
func ProgramDataDir() Descriptor {
	return Descriptor{Owner: Administrators, DACL: []ACE{
		{ObjectAndContain, FullAccess, System},
		{ObjectAndContain, FullAccess, Administrators},
		{ObjectAndContain, ReadExecute, Users},
	}}
}

// StateDir is the descriptor of the agent's private state directory: SYSTEM
// and Administrators only (it holds password verifiers).
func StateDir() Descriptor {
	return Descriptor{Owner: Administrators, DACL: []ACE{
		{ObjectAndContain, FullAccess, System},
		{ObjectAndContain, FullAccess, Administrators},
	}}
}

// AdministratorsAuthorizedKeys is the descriptor OpenSSH for Windows requires
// of %ProgramData%\ssh\administrators_authorized_keys: only SYSTEM and
// Administrators have access; sshd ignores the file otherwise.
func AdministratorsAuthorizedKeys() Descriptor {
	return Descriptor{Owner: Administrators, DACL: []ACE{
		{NoInherit, FullAccess, System},
		{NoInherit, FullAccess, Administrators},
	}}
}

// Read is FILE_GENERIC_READ (0x120089): read the data, attributes and ACL.
const Read = "0x120089"

// UserAuthorizedKeys is the descriptor of a user's .ssh\authorized_keys:
// owned by Administrators, full access for SYSTEM and Administrators, read
// for the user. OpenSSH for Windows accepts a file owned by the user, SYSTEM
// or Administrators that nobody else can write; owning it by the user's SID
// would need SeRestorePrivilege, which the service's token has disabled,
// so the ownership is the one the agent can always give. The user reads
// the agent's keys and cannot change them (the block is the agent's; the
// next generation restores it anyway).
func UserAuthorizedKeys(userSID string) (Descriptor, error) {
	if err := CheckSID(userSID); err != nil {
		return Descriptor{}, err
	}
	return Descriptor{Owner: Administrators, DACL: []ACE{
		{NoInherit, FullAccess, System},
		{NoInherit, FullAccess, Administrators},
		{NoInherit, Read, userSID},
	}}, nil
}

// UserSSHDir is the descriptor of the .ssh directory the agent creates in a
// user's profile: owned by Administrators, full access for SYSTEM,
// Administrators and the user (it is the user's directory: known_hosts,
// their own keys), inherited by what the user puts there. The agent's
// authorized_keys gets its own protected descriptor.
func UserSSHDir(userSID string) (Descriptor, error) {
	if err := CheckSID(userSID); err != nil {
		return Descriptor{}, err
	}
	return Descriptor{Owner: Administrators, DACL: []ACE{
		{ObjectAndContain, FullAccess, System},
		{ObjectAndContain, FullAccess, Administrators},
		{ObjectAndContain, FullAccess, userSID},
	}}, nil
}
