package plan

import (
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

func TestCheckUsers(t *testing.T) {
	users := []config.User{
		{Name: "alice"},
		{Name: strings.Repeat("a", 20)},
		{Name: strings.Repeat("b", 21)},
		{Name: "carol", PasswordHash: "$6$x$y"},
	}
	got := CheckUsers(users)
	if len(got) != 2 {
		t.Fatalf("CheckUsers = %+v; want two errors", got)
	}
	if got[0].Path != "users[2].name" || !strings.Contains(got[0].Reason, "at most 20") {
		t.Errorf("name: %+v", got[0])
	}
	if got[1].Path != "users[3].passwordHash" {
		t.Errorf("hash: %+v", got[1])
	}
	if err := CheckUser(users[2]); err == nil || !strings.Contains(err.Error(), "name ") {
		t.Errorf("CheckUser(21 characters) = %v", err)
	}
}

func TestSharedAdminKeys(t *testing.T) {
	windowsDefault := "# default\r\nAuthorizedKeysFile .ssh/authorized_keys\r\nSubsystem sftp sftp-server.exe\r\n\r\nMatch Group administrators\r\n       AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\r\n"
	tests := []struct {
		name, cfg string
		line      int
		shared    bool
	}{
		{"windows default", windowsDefault, 5, true},
		{"commented out", strings.ReplaceAll(windowsDefault, "Match", "#Match"), 0, false},
		{"both commented", "#Match Group administrators\n#  AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\n", 0, false},
		{"other group", "Match Group sshusers\n AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\n", 0, false},
		{"list, case, equals", "match group Users,Administrators\nAuthorizedKeysFile=__PROGRAMDATA__/ssh/Administrators_Authorized_Keys\n", 1, true},
		{"block ended", "Match Group administrators\n PasswordAuthentication no\nMatch all\nAuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\n", 0, false},
		{"own file for admins", "Match Group administrators\n AuthorizedKeysFile .ssh/authorized_keys\n", 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		line, shared := SharedAdminKeys([]byte(tt.cfg))
		if line != tt.line || shared != tt.shared {
			t.Errorf("%s: %d, %v; want %d, %v", tt.name, line, shared, tt.line, tt.shared)
		}
	}
}
