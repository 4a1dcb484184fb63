package sddl

import (
	"errors"
	"testing"
)

func TestDescriptors(t *testing.T) {
	user, err := UserAuthorizedKeys("S-1-5-21-1-2-3-1001", false)
	if err != nil {
		t.Fatal(err)
	}
	userDir, err := UserAuthorizedKeys("S-1-5-21-1-2-3-1001", true)
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
		{"user authorized_keys", user, "O:S-1-5-21-1-2-3-1001D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;S-1-5-21-1-2-3-1001)"},
		{"user .ssh", userDir, "O:S-1-5-21-1-2-3-1001D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;S-1-5-21-1-2-3-1001)"},
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
	if _, err := UserAuthorizedKeys("WD", false); err == nil {
		t.Error("UserAuthorizedKeys accepted Everyone")
	}
	if err := (Descriptor{Owner: "BA"}).Validate(); err == nil {
		t.Error("empty DACL validated")
	}
	if err := (Descriptor{Owner: "BA", DACL: []ACE{{"XX", FullAccess, System}}}).Validate(); err == nil {
		t.Error("bad inheritance validated")
	}
}
