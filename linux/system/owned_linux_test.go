package system

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/shared/config"
)

// addPasswd appends accounts ("name:uid") to the scratch root's
// /etc/passwd, each with a home under /home that does not exist: accounts
// the agent did not create.
func addPasswd(t *testing.T, root string, accounts ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, "etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	for _, a := range accounts {
		name, uid, _ := strings.Cut(a, ":")
		_, err := f.WriteString(name + ":x:" + uid + ":" + uid + "::/home/" + name + ":/bin/sh\n")
		must(t, err)
	}
}

// TestUsersExistingAccountsRefused: a document naming an account that
// already exists and that the agent did not create is refused, naming the
// user, before any command runs or any file is written; the image
// builder's list lets the agent manage an ordinary account, never one in
// a system range of login.defs or nobody.
func TestUsersExistingAccountsRefused(t *testing.T) {
	tests := []struct {
		name, uid string
		listed    bool
		loginDefs string // replaces the root's login.defs when set
		want      error  // nil: managed
		wantText  string
	}{
		{name: "preexist", uid: "1500", want: ErrUnmanagedAccount, wantText: "not created by the agent"},
		{name: "admin", uid: "1000", want: ErrUnmanagedAccount, wantText: "--manage-existing-users"},
		{name: "listed", uid: "1501", listed: true},
		{name: "high", uid: "65000", want: ErrSystemAccount, wantText: "UID_MAX 60000"},
		{name: "highlisted", uid: "65000", listed: true, want: ErrSystemAccount, wantText: "UID_MAX 60000"},
		{name: "nobody", uid: "65534", listed: true, want: ErrSystemAccount, wantText: "nobody"},
		{name: "nfsnobody", uid: "4294967294", listed: true, want: ErrSystemAccount, wantText: "nobody"},
		{name: "daemon", listed: true, want: ErrSystemAccount, wantText: "UID_MIN 1000"},
		{name: "sysabove", uid: "1500", listed: true, want: ErrSystemAccount, wantText: "SYS_UID_MAX",
			loginDefs: "UID_MIN 1000\nUID_MAX 60000\nSYS_UID_MIN 100\nSYS_UID_MAX 1999\n"},
		{name: "hexmax", uid: "3000", listed: true, want: ErrSystemAccount, wantText: "UID_MAX 2047",
			loginDefs: "UID_MIN\t0x3e8\nUID_MAX 0x7ff # a comment\n"},
		{name: "inrange", uid: "2500", listed: true,
			loginDefs: "UID_MIN 2000\nUID_MAX 3000\n#SYS_UID_MAX 2999\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := scratchRoot(t)
			if tt.uid != "" {
				addPasswd(t, root, tt.name+":"+tt.uid)
			}
			if tt.loginDefs != "" {
				must(t, os.WriteFile(filepath.Join(root, "etc/login.defs"), []byte(tt.loginDefs), 0o644))
			}
			var list []string
			if tt.listed {
				list = []string{tt.name}
			}
			f := &fakeRunner{}
			s := New(Options{Root: root, Runner: f, Logger: testLogger(t), ManageExistingUsers: list})
			passwd := read(t, filepath.Join(root, "etc/passwd"))
			u := config.User{Name: tt.name, Shell: "/bin/bash", Groups: []string{"prewarm-new"}, Sudo: "nopasswd", SSHAuthorizedKeys: []string{kKey}}
			_, err := s.ApplyUsers(context.Background(), []config.User{u})
			if tt.want == nil {
				if len(f.cmds) == 0 {
					t.Fatalf("a listed account was not managed: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), `"`+tt.name+`"`) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err %v; want %v naming %q and %q", err, tt.want, tt.name, tt.wantText)
			}
			if len(f.cmds) != 0 {
				t.Fatalf("commands ran for a refused account: %v", f.cmds)
			}
			if got := read(t, filepath.Join(root, "etc/passwd")); got != passwd {
				t.Fatal("/etc/passwd changed")
			}
			for _, p := range []string{"etc/sudoers.d/prewarm-" + tt.name, "home/" + tt.name, "var/lib/prewarm/" + usersRecordFile} {
				if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
					t.Fatalf("/%s written for a refused account: %v", p, err)
				}
			}
		})
	}
}

// TestUsersCreatedAccountsRecorded (ROOT TEST: real useradd --root): an
// account the agent created in one generation is recorded in the state
// directory of the target root and is managed again by a new System (an
// agent restart) in the next generation. A record that names the account
// with another uid (it was deleted and someone else made one of that name)
// does not let the agent manage it; a corrupt record fails the step naming
// the file and creates nobody.
func TestUsersCreatedAccountsRecorded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: useradd --root needs root; skipped as non-root")
	}
	root := scratchRoot(t)
	ctx := context.Background()
	gen1 := []config.User{{Name: "fresh", Shell: "/bin/sh"}}
	if _, err := New(Options{Root: root, Logger: testLogger(t)}).ApplyUsers(ctx, gen1); err != nil {
		t.Fatalf("generation 1: %v", err)
	}
	rec := filepath.Join(root, "var/lib/prewarm", usersRecordFile)
	st, err := os.Stat(rec)
	if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(read(t, rec), `"fresh"`) {
		t.Fatalf("record %s: %v %v", rec, st, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(rec)); len(ents) != 1 {
		t.Fatalf("temporary files left next to the record: %v", ents)
	}

	s := New(Options{Root: root, Logger: testLogger(t)}) // a restarted agent
	gen2 := []config.User{{Name: "fresh", Shell: "/usr/bin/zsh"}}
	if res, err := s.ApplyUsers(ctx, gen2); err != nil || !res.Changed {
		t.Fatalf("generation 2: %+v, %v", res, err)
	}
	if pw, _ := s.lookupUser("fresh"); pw == nil || pw.shell != "/usr/bin/zsh" {
		t.Fatalf("fresh not updated: %+v", pw)
	}

	// Someone else's account under the recorded name.
	for _, c := range [][]string{{"userdel", "--root", root, "fresh"}, {"useradd", "--root", root, "-u", "1777", "-M", "fresh"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	_, err = s.ApplyUsers(ctx, gen1)
	if !errors.Is(err, ErrUnmanagedAccount) || !strings.Contains(err.Error(), `"fresh"`) {
		t.Fatalf("a new account under a recorded name: err %v, want ErrUnmanagedAccount", err)
	}

	must(t, os.WriteFile(rec, []byte("{not json"), 0o600))
	_, err = s.ApplyUsers(ctx, []config.User{{Name: "other"}})
	if err == nil || !strings.Contains(err.Error(), rec[len(root):]) {
		t.Fatalf("corrupt record: err %v, want one naming %s", err, rec[len(root):])
	}
	if pw, _ := s.lookupUser("other"); pw != nil {
		t.Fatal("a user was created while the record is unreadable")
	}
}

type failRunner struct{ fakeRunner }

// halfRunner's useradd writes the account, then fails, as useradd does
// when it cannot create the home directory (exit 12).
type halfRunner struct {
	fakeRunner
	t    *testing.T
	root string
}

func (f *halfRunner) Run(ctx context.Context, c run.Cmd) ([]byte, error) {
	f.fakeRunner.Run(ctx, c)
	if c.Name == "useradd" {
		addPasswd(f.t, f.root, c.Args[len(c.Args)-1]+":1700")
		return nil, errors.New("useradd: cannot create directory /home/half")
	}
	return nil, nil
}

func (f *failRunner) Run(ctx context.Context, c run.Cmd) ([]byte, error) {
	f.fakeRunner.Run(ctx, c)
	return nil, errors.New("useradd: cannot lock /etc/passwd")
}

// TestUsersPendingRecord: an entry written before useradd and never
// completed (the agent stopped in between) is adopted by the next apply,
// uid and all, unless the account is a system account; a useradd that
// fails leaves no entry behind.
func TestUsersPendingRecord(t *testing.T) {
	root := scratchRoot(t)
	rec := filepath.Join(root, "var/lib/prewarm", usersRecordFile)
	must(t, os.MkdirAll(filepath.Dir(rec), 0o700))
	must(t, os.WriteFile(rec, []byte(`{"created":[{"name":"pend"},{"name":"nobody"}]}`), 0o600))
	addPasswd(t, root, "pend:1600")
	f := &fakeRunner{}
	s := New(Options{Root: root, Runner: f, Logger: testLogger(t)})
	if _, err := s.ApplyUsers(context.Background(), []config.User{{Name: "pend", Shell: "/bin/bash"}}); err != nil || len(f.cmds) != 1 {
		t.Fatalf("pending entry not adopted: %v, %v", f.cmds, err)
	}
	if got := read(t, rec); !strings.Contains(got, `"uid": 1600`) {
		t.Fatalf("record after adopting: %s", got)
	}
	if _, err := s.ApplyUsers(context.Background(), []config.User{{Name: "nobody"}}); !errors.Is(err, ErrSystemAccount) {
		t.Fatalf("pending nobody: err %v, want ErrSystemAccount", err)
	}

	fr := &failRunner{}
	s = New(Options{Root: root, Runner: fr, Logger: testLogger(t)})
	if _, err := s.ApplyUsers(context.Background(), []config.User{{Name: "newbie"}}); err == nil || !strings.Contains(err.Error(), `"newbie"`) {
		t.Fatalf("failed useradd: err %v", err)
	}
	if got := read(t, rec); strings.Contains(got, "newbie") {
		t.Fatalf("a user useradd did not create stays recorded: %s", got)
	}

	// A useradd that wrote the account and then failed (no home) created
	// it: the step fails, but the account stays the agent's, so the next
	// generation can manage it instead of refusing it for good.
	hr := &halfRunner{t: t, root: root}
	s = New(Options{Root: root, Runner: hr, Logger: testLogger(t)})
	if _, err := s.ApplyUsers(context.Background(), []config.User{{Name: "half"}}); err == nil || !strings.Contains(err.Error(), `"half"`) {
		t.Fatalf("useradd that failed after writing the account: err %v, want the step failed naming the user", err)
	}
	if got := read(t, rec); !strings.Contains(got, `"half"`) || !strings.Contains(got, `"uid": 1700`) {
		t.Fatalf("an account useradd wrote before failing is not recorded as the agent's: %s", got)
	}
	s = New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t)})
	if _, err := s.ApplyUsers(context.Background(), []config.User{{Name: "half", Shell: "/bin/bash"}}); err != nil {
		t.Fatalf("next apply of the half-created account: %v", err)
	}
}
