package platform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
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
		// Keys only: created with a random password nobody knows.
		{Name: "prewarmtest3", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAkeyonly k@x"}},
	}
	res, err := m.ApplyUsers(context.Background(), users)
	t.Logf("first apply: %+v, %v", res, err)
	if err != nil {
		t.Skipf("Wine's netapi32 cannot do this: %v", err)
	}
	if !res.Changed {
		t.Error("first apply changed nothing")
	}
	// Every user's keys in their own file, the administrator's too; none in
	// administrators_authorized_keys, where they would log on as every
	// administrator.
	if admin, err := os.ReadFile(rooted(root, filepath.Join(programData(), "ssh", "administrators_authorized_keys"))); err == nil {
		t.Errorf("administrators_authorized_keys written: %q", admin)
	}
	for _, u := range users {
		sid, err := lookupUser(u.Name)
		if err != nil || sid == nil {
			t.Fatalf("lookupUser(%s) = %v, %v", u.Name, sid, err)
		}
		profile, err := profileDir(sid, u.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(rooted(root, profile), ".ssh", "authorized_keys"))
		if err != nil || !strings.Contains(string(b), strings.TrimPrefix(u.SSHAuthorizedKeys[0], "ssh-ed25519 ")) {
			t.Errorf("%s's authorized_keys = %q, %v", u.Name, b, err)
		}
	}
	for _, a := range res.Actions {
		if strings.Contains(a, "Sw0rdfish") {
			t.Errorf("an action names the password: %q", a)
		}
	}
	st, err := os.ReadFile(filepath.Join(m.stateDir, "users.json"))
	if err != nil || strings.Contains(string(st), "prewarmtest3\": \"scrypt") {
		t.Errorf("state %s, %v: the random password's verifier is stored", st, err)
	}
	res, err = m.ApplyUsers(context.Background(), users)
	if err != nil || res.Changed {
		t.Errorf("second apply: %+v, %v; want no change", res, err)
	}

	// Under Windows' default sshd_config an administrator's own file is
	// ignored: the step says so instead of granting the keys to every
	// administrator.
	cfg := rooted(root, filepath.Join(programData(), "ssh", "sshd_config"))
	if err := os.WriteFile(cfg, []byte("AuthorizedKeysFile .ssh/authorized_keys\r\nMatch Group administrators\r\n  AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = m.ApplyUsers(context.Background(), users)
	if !errors.Is(err, ErrSharedAdminKeys) || !strings.Contains(err.Error(), "prewarmtest1") || strings.Contains(err.Error(), "prewarmtest2") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("apply under the default sshd_config: %v; want ErrSharedAdminKeys for prewarmtest1 only, naming line 2", err)
	}
}

// TestCheckDocumentWindowsLimits: the platform refuses, by field, what
// Windows cannot take, before anything is applied.
func TestCheckDocumentWindowsLimits(t *testing.T) {
	doc := &config.Document{
		Hostname: "a-very-long-host-name.example",
		Users:    []config.User{{Name: "ok"}, {Name: "abcdefghijklmnopqrstu"}},
	}
	h := &hostnameSetter{log: testLogger(t)}
	m := &userManager{log: testLogger(t)}
	hf, uf := h.CheckDocument(doc), m.CheckDocument(doc)
	if len(hf) != 1 || hf[0].Path != "hostname" || !strings.Contains(hf[0].Reason, "15") {
		t.Errorf("hostname: %+v", hf)
	}
	if len(uf) != 1 || uf[0].Path != "users[1].name" || !strings.Contains(uf[0].Reason, "20") {
		t.Errorf("users: %+v", uf)
	}
	if f := h.CheckDocument(&config.Document{Hostname: "web-01.example"}); f != nil {
		t.Errorf("valid hostname refused: %+v", f)
	}
}

// TestBootID: one value within a boot.
func TestBootID(t *testing.T) {
	h := &hostnameSetter{log: testLogger(t)}
	a, err := h.BootID()
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.BootID()
	if err != nil || a != b || a == "" {
		t.Errorf("BootID = %q then %q, %v; want one non-empty value", a, b, err)
	}
}

// TestEnsureKeysUnderWine writes the keys of Wine's own user (the one
// account LookupAccountName knows there: Wine's netapi32 keeps the users it
// adds to itself) under a throwaway root: the user's own file for an
// administrator too, never administrators_authorized_keys (an old block
// there is taken out), and the refusal under Windows' default sshd_config.
func TestEnsureKeysUnderWine(t *testing.T) {
	if !isWine() {
		t.Skip("writes into a user's profile: runs only under Wine (windows/wine-test.sh)")
	}
	name := os.Getenv("USERNAME")
	sid, err := lookupUser(name)
	if err != nil || sid == nil {
		t.Skipf("Wine's user %q: %v, %v", name, sid, err)
	}
	root := tempDir(t)
	m := &userManager{root: root, stateDir: tempDir(t), log: testLogger(t)}
	adminFile := rooted(root, filepath.Join(programData(), "ssh", "administrators_authorized_keys"))
	if err := os.MkdirAll(filepath.Dir(adminFile), 0o755); err != nil {
		t.Fatal(err)
	}
	// A block an earlier agent wrote there, beside a key it did not write.
	old := "ssh-ed25519 AAAAother other@x\r\n# BEGIN prewarm-agent keys for " + name + "\r\nssh-ed25519 AAAAold old@x\r\n# END prewarm-agent keys for " + name + "\r\n"
	if err := os.WriteFile(adminFile, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	u := config.User{Name: name, Sudo: "nopasswd", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAadmin admin@x"}}
	var res plan.Result
	if err := m.ensureKeys(u, sid, &res); err != nil {
		t.Fatal(err)
	}
	profile, err := profileDir(sid, name)
	if err != nil {
		t.Fatal(err)
	}
	own, err := os.ReadFile(filepath.Join(rooted(root, profile), ".ssh", "authorized_keys"))
	if err != nil || !strings.Contains(string(own), "AAAAadmin") {
		t.Errorf("own authorized_keys = %q, %v", own, err)
	}
	shared, err := os.ReadFile(adminFile)
	if err != nil || strings.Contains(string(shared), "AAAAold") || strings.Contains(string(shared), "AAAAadmin") || !strings.Contains(string(shared), "AAAAother") {
		t.Errorf("administrators_authorized_keys = %q, %v; want the agent's block gone, the other key kept", shared, err)
	}
	cfg := rooted(root, filepath.Join(programData(), "ssh", "sshd_config"))
	if err := os.WriteFile(cfg, []byte("AuthorizedKeysFile .ssh/authorized_keys\r\nMatch Group administrators\r\n  AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = m.ensureKeys(u, sid, &res)
	if !errors.Is(err, ErrSharedAdminKeys) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("administrator under the default sshd_config: %v; want ErrSharedAdminKeys naming line 2", err)
	}
	u.Sudo = ""
	if err := m.ensureKeys(u, sid, &res); err != nil {
		t.Errorf("a non-administrator under the default sshd_config: %v", err)
	}
}
