package sddl

import (
	"errors"
	"testing"
)

func TestDescriptors(t *testing.T) {
	user, err := UserAuthorizedKeys("S-1-5-21-1-2-3-1001")
	if err != nil {
		t.Fatal(err)
	}
	userDir, err := UserSSHDir("S-1-5-21-1-2-3-1001")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		d    Descriptor
		want string
	}{
		{"programdata", ProgramDataDir(), "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"},
		{"state", StateDir(), "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"},
		{"administrators_authorized_keys", AdministratorsAuthorizedKeys(), "O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)"},
		// Owned by Administrators, the user reads: no SeRestorePrivilege needed.
		{"user authorized_keys", user, "O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x120089;;;S-1-5-21-1-2-3-1001)"},
		{"user .ssh", userDir, "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;S-1-5-21-1-2-3-1001)"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%s: %s; want %s", tt.name, got, tt.want)
		}
		if err := tt.d.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tt.name, err)
		}
	}
}

func TestAdministratorsKeysGrantNobodyElse(t *testing.T) {
	// sshd refuses administrators_authorized_keys if anyone but SYSTEM and
	// Administrators has access: guard against a well-meant "Users read".
	for _, a := range AdministratorsAuthorizedKeys().DACL {
		if a.SID != System && a.SID != Administrators {
			t.Errorf("ACE for %s", a.SID)
		}
	}
}

func TestUserKeysWritableBySystemAndAdministratorsOnly(t *testing.T) {
	// OpenSSH for Windows refuses an authorized_keys that anyone but its
	// owner, SYSTEM and Administrators may write; the owner must be one
	// the service can set without SeRestorePrivilege.
	d, err := UserAuthorizedKeys("S-1-5-21-1-2-3-1001")
	if err != nil {
		t.Fatal(err)
	}
	if d.Owner != Administrators && d.Owner != System {
		t.Errorf("owner %s; want SYSTEM or Administrators", d.Owner)
	}
	for _, a := range d.DACL {
		if a.SID != System && a.SID != Administrators && a.Rights != Read {
			t.Errorf("%s may do %s; want read only", a.SID, a.Rights)
		}
	}
}

func TestCheckSID(t *testing.T) {
	for _, ok := range []string{"SY", "BA", "BU", "S-1-5-18", "S-1-5-21-3623811015-3361044348-30300820-1013"} {
		if err := CheckSID(ok); err != nil {
			t.Errorf("CheckSID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "XX", "S-1", "S-1-5-", "S-1-5-18)(A;;FA;;;WD", "alice"} {
		if err := CheckSID(bad); !errors.Is(err, ErrBadSID) {
			t.Errorf("CheckSID(%q) = %v; want ErrBadSID", bad, err)
		}
	}
	if _, err := UserAuthorizedKeys("WD"); err == nil {
		t.Error("UserAuthorizedKeys accepted Everyone")
	}
	if _, err := UserSSHDir("WD"); err == nil {
		t.Error("UserSSHDir accepted Everyone")
	}
	if err := (Descriptor{Owner: "BA"}).Validate(); err == nil {
		t.Error("empty DACL validated")
	}
	if err := (Descriptor{Owner: "BA", DACL: []ACE{{"XX", FullAccess, System}}}).Validate(); err == nil {
		t.Error("bad inheritance validated")
	}
}
