package platform

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// TestApplyUsersUnderWine runs the users step end to end against Wine's
// emulation of netapi32 and the registry, which live in the throwaway Wine
// prefix: it never runs on a real Windows machine, where it would create
// accounts.
func TestApplyUsersUnderWine(t *testing.T) {
	if !isWine() {
		t.Skip("creates local accounts: runs only under Wine (windows/wine-test.sh)")
	}
	root := tempDir(t)
	m := &userManager{root: root, stateDir: tempDir(t), log: testLogger(t)}
	users := []config.User{
		{Name: "prewarmtest1", Password: "Sw0rdfish!x", Sudo: "nopasswd", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAadmin admin@x"}},
		{Name: "prewarmtest2", Password: "Sw0rdfish!y", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAuser user@x"}},
	}
	res, err := m.ApplyUsers(context.Background(), users)
	t.Logf("first apply: %+v, %v", res, err)
	if err != nil {
		t.Skipf("Wine's netapi32 cannot do this: %v", err)
	}
	if !res.Changed {
		t.Error("first apply changed nothing")
	}
	admin, err := os.ReadFile(rooted(root, filepath.Join(programData(), "ssh", "administrators_authorized_keys")))
	if err != nil || !strings.Contains(string(admin), "AAAAadmin") || strings.Contains(string(admin), "AAAAuser") {
		t.Errorf("administrators_authorized_keys = %q, %v", admin, err)
	}
	for _, a := range res.Actions {
		if strings.Contains(a, "Sw0rdfish") {
			t.Errorf("an action names the password: %q", a)
		}
	}
	res, err = m.ApplyUsers(context.Background(), users)
	if err != nil || res.Changed {
		t.Errorf("second apply: %+v, %v; want no change", res, err)
	}
}
