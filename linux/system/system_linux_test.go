package system

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/shared/config"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeRunner records commands and runs none.
type fakeRunner struct {
	cmds  []run.Cmd
	avail []string
}

func (f *fakeRunner) Run(_ context.Context, c run.Cmd) ([]byte, error) {
	f.cmds = append(f.cmds, c)
	return nil, nil
}

func (f *fakeRunner) Look(name string) (string, error) {
	if slices.Contains(f.avail, name) {
		return "/fake/" + name, nil
	}
	return "", run.ErrNotFound
}

// scratchRoot makes a minimal target root: the account databases and
// login.defs of this machine, /home, and two zones.
func scratchRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"etc", "home", "usr/share/zoneinfo/Europe"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/login.defs", "usr/share/zoneinfo/UTC", "usr/share/zoneinfo/Europe/Berlin"} {
		b, err := os.ReadFile("/" + f)
		if err != nil && strings.Contains(f, "shadow") && os.IsPermission(err) {
			b, err = nil, nil // non-root: the file-only tests need no shadow
		}
		if err != nil {
			t.Skipf("needs /%s: %v", f, err)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(f, "shadow") {
			mode = 0o640
		}
		if err := os.WriteFile(filepath.Join(root, f), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func read(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHostnameScratchRoot(t *testing.T) {
	root := scratchRoot(t)
	os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1\tlocalhost\n127.0.1.1\told.example old\n::1\tlocalhost ip6-localhost\n"), 0o644)
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t)})
	ctx := context.Background()
	res, err := s.ApplyHostname(ctx, "web-01.corp.example")
	if err != nil || !res.Changed {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	if got := read(t, filepath.Join(root, "etc/hostname")); got != "web-01.corp.example\n" {
		t.Fatalf("/etc/hostname = %q", got)
	}
	want := "127.0.0.1\tlocalhost\n127.0.1.1\tweb-01.corp.example web-01\n::1\tlocalhost ip6-localhost\n"
	if got := read(t, filepath.Join(root, "etc/hosts")); got != want {
		t.Fatalf("/etc/hosts = %q, want %q", got, want)
	}
	if res, err := s.ApplyHostname(ctx, "web-01.corp.example"); err != nil || res.Changed {
		t.Fatalf("second apply changed something: %+v, %v", res, err)
	}
	// The last two are the document's rule against IP literals, which the
	// copy of the label rule this package had let through.
	for _, bad := range []string{"", "-web", "web_01", "a..b", strings.Repeat("a", 64), "web 01", "10.0.0.1", "web.123"} {
		if _, err := s.ApplyHostname(ctx, bad); !errors.Is(err, ErrInvalidHostname) {
			t.Errorf("hostname %q: err %v, want ErrInvalidHostname", bad, err)
		}
	}
}

func TestTimezoneScratchRoot(t *testing.T) {
	root := scratchRoot(t)
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t)})
	ctx := context.Background()
	for _, zone := range []string{"Europe/Berlin", "UTC"} {
		res, err := s.ApplyTimezone(ctx, zone)
		if err != nil || !res.Changed {
			t.Fatalf("%s: first apply: %+v, %v", zone, res, err)
		}
		if l, _ := os.Readlink(filepath.Join(root, "etc/localtime")); l != "/usr/share/zoneinfo/"+zone {
			t.Fatalf("/etc/localtime -> %q", l)
		}
		if got := read(t, filepath.Join(root, "etc/timezone")); got != zone+"\n" {
			t.Fatalf("/etc/timezone = %q", got)
		}
		if res, err := s.ApplyTimezone(ctx, zone); err != nil || res.Changed {
			t.Fatalf("%s: second apply changed something: %+v, %v", zone, res, err)
		}
	}
	for _, bad := range []string{"Mars/Olympus_Mons", "Local", "../../etc/passwd", "Europe", ""} {
		_, err := s.ApplyTimezone(ctx, bad)
		if !errors.Is(err, ErrUnknownZone) || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("zone %q: err %v, want ErrUnknownZone naming it", bad, err)
		}
	}
}

// fakeProc is a /proc with systemd as PID 1 and the given process names
// (comm, cut to 15 bytes as the kernel does) as PIDs 100, 101, ...
func fakeProc(t *testing.T, comms ...string) string {
	proc := t.TempDir()
	for i, c := range append([]string{"systemd"}, comms...) {
		pid := "1"
		if i > 0 {
			pid = strconv.Itoa(99 + i)
		}
		os.MkdirAll(filepath.Join(proc, pid), 0o755)
		os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(c[:min(len(c), 15)]+"\n"), 0o644)
	}
	return proc
}

func TestTimedatectlOnlyWhenSystemdAndChanged(t *testing.T) {
	root := scratchRoot(t)
	f := &fakeRunner{avail: []string{"timedatectl"}}
	s := New(Options{Root: root, Runner: f, Logger: testLogger(t), Live: true, ProcDir: fakeProc(t, "systemd-timedated")})
	for range 2 {
		if _, err := s.ApplyTimezone(context.Background(), "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.cmds) != 1 || f.cmds[0].String() != "timedatectl set-timezone Europe/Berlin" {
		t.Fatalf("commands %v, want one timedatectl set-timezone", f.cmds)
	}
}

// With systemd-timedated not running, the agent does not start it through
// timedatectl only to say what /etc/localtime already says: the daemon
// reads the link when D-Bus starts it.
func TestTimedatectlNotWhenTimedatedIdle(t *testing.T) {
	root := scratchRoot(t)
	f := &fakeRunner{avail: []string{"timedatectl"}}
	s := New(Options{Root: root, Runner: f, Logger: testLogger(t), Live: true, ProcDir: fakeProc(t, "systemd-journald", "sshd")})
	res, err := s.ApplyTimezone(context.Background(), "Europe/Berlin")
	if err != nil || !res.Changed {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if len(f.cmds) != 0 {
		t.Fatalf("commands %v, want none", f.cmds)
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/localtime")); l != "/usr/share/zoneinfo/Europe/Berlin" {
		t.Fatalf("/etc/localtime -> %q", l)
	}
}

// TestHostnameKernelInUTSNamespace (ROOT TEST) sets the kernel hostname,
// only ever inside a UTS namespace of its own: it re-executes this test
// under `unshare --uts`.
func TestHostnameKernelInUTSNamespace(t *testing.T) {
	if os.Getenv("PWL_UTS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("ROOT TEST: needs root for unshare --uts; skipped as non-root")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("unshare not installed (util-linux)")
		}
		before, _ := os.Hostname()
		cmd := exec.Command("unshare", "--uts", os.Args[0], "-test.run=^TestHostnameKernelInUTSNamespace$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "PWL_UTS=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("child: %v", err)
		}
		if after, _ := os.Hostname(); after != before {
			t.Fatalf("the machine's hostname changed: %q -> %q", before, after)
		}
		return
	}
	self, _ := os.Readlink("/proc/self/ns/uts")
	init, _ := os.Readlink("/proc/1/ns/uts")
	if self == "" || self == init {
		t.Fatal("not in a private UTS namespace; refusing to set the hostname")
	}
	root := scratchRoot(t)
	f := &fakeRunner{avail: []string{"hostnamectl"}}
	s := New(Options{Root: root, Runner: f, Logger: testLogger(t), Live: true, ProcDir: fakeProc(t, "systemd-hostnamed")})
	res, err := s.ApplyHostname(context.Background(), "guest-7")
	if err != nil || !slices.Contains(res.Actions, "set kernel hostname") {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	if h, _ := kernelHostname(); h != "guest-7" {
		t.Fatalf("kernel hostname %q", h)
	}
	if res, err := s.ApplyHostname(context.Background(), "guest-7"); err != nil || res.Changed {
		t.Fatalf("second apply changed something: %+v, %v", res, err)
	}
	if len(f.cmds) != 1 || f.cmds[0].String() != "hostnamectl set-hostname guest-7" {
		t.Fatalf("commands %v, want one hostnamectl", f.cmds)
	}
	// With systemd-hostnamed idle, a new name needs no hostnamectl: the
	// files and the kernel name are the whole truth hostnamed starts from.
	f.cmds = nil
	s = New(Options{Root: root, Runner: f, Logger: testLogger(t), Live: true, ProcDir: fakeProc(t, "sshd")})
	if res, err := s.ApplyHostname(context.Background(), "guest-8"); err != nil || !slices.Contains(res.Actions, "set kernel hostname") {
		t.Fatalf("apply with hostnamed idle: %+v, %v", res, err)
	}
	if len(f.cmds) != 0 {
		t.Fatalf("commands %v with hostnamed idle, want none", f.cmds)
	}
}

func TestUsersFakeRunnerKeepsSecretsOffArgv(t *testing.T) {
	root := scratchRoot(t)
	f := &fakeRunner{}
	s := New(Options{Root: root, Runner: f, Logger: testLogger(t)})
	// bob does not exist, so useradd "runs" (faked) but /etc/passwd has no
	// bob: the step fails after useradd, which is all this test looks at.
	s.ApplyUsers(context.Background(), []config.User{{Name: "bob", Password: "pl41n-s3cret"}})
	for _, c := range f.cmds {
		if strings.Contains(c.String(), "pl41n") || strings.Contains(string(c.Stdin), "pl41n") {
			t.Fatalf("plaintext password in command %q", c.String())
		}
		if !slices.Contains(c.Args, "--root") {
			t.Fatalf("command %q without --root", c.String())
		}
	}
}

// TestUsersScratchRoot (ROOT TEST) runs the real useradd, usermod,
// groupadd and chpasswd with --root against a scratch root.
func TestUsersScratchRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: useradd --root needs root; skipped as non-root")
	}
	root := scratchRoot(t)
	ctx := context.Background()
	s := New(Options{Root: root, Logger: testLogger(t)})
	hash := sha512Crypt("alice-pw", "abcdefgh", 0)
	users := []config.User{
		{Name: "alice", Groups: []string{"prewarm-devs", "users"}, Sudo: "nopasswd", Shell: "/bin/sh",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop"}, PasswordHash: hash},
		{Name: "bob", Password: "bob-plain-pw", Sudo: "password"},
	}
	res, err := s.ApplyUsers(ctx, users)
	if err != nil || !res.Changed {
		t.Fatalf("first apply: %+v, %v", res, err)
	}
	t.Logf("actions: %q", res.Actions)
	alice, _ := s.lookupUser("alice")
	if alice == nil || alice.shell != "/bin/sh" || alice.uid < s.uidMin() {
		t.Fatalf("alice = %+v", alice)
	}
	_, member, _ := s.groups("alice")
	if !member["prewarm-devs"] || !member["users"] {
		t.Fatalf("alice's groups %v", member)
	}
	if h, _ := s.shadowHash("alice"); h != hash {
		t.Fatalf("alice's hash %q", h)
	}
	if h, _ := s.shadowHash("bob"); !strings.HasPrefix(h, "$6$") {
		t.Fatalf("bob's hash %q", h)
	} else if ok, _ := matchSHA512("bob-plain-pw", h); !ok {
		t.Fatal("bob's hash does not match his password")
	}
	sp := filepath.Join(root, "etc/sudoers.d/prewarm-alice")
	st, err := os.Stat(sp)
	if err != nil || st.Mode().Perm() != 0o440 || !strings.Contains(read(t, sp), "alice ALL=(ALL:ALL) NOPASSWD:ALL") {
		t.Fatalf("sudoers drop-in: %v %v", st, err)
	}
	kp := filepath.Join(root, "home/alice/.ssh/authorized_keys")
	st, err = os.Stat(kp)
	if err != nil || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != uint32(alice.uid) {
		t.Fatalf("authorized_keys: %v %v", st, err)
	}
	if st, _ := os.Stat(filepath.Dir(kp)); st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != uint32(alice.uid) {
		t.Fatalf(".ssh: %v", st)
	}
	// A key the user added by hand stays.
	f, _ := os.OpenFile(kp, os.O_APPEND|os.O_WRONLY, 0)
	io.WriteString(f, "ssh-ed25519 AAAAmine alice@phone\n")
	f.Close()

	res, err = s.ApplyUsers(ctx, users)
	if err != nil || res.Changed {
		t.Fatalf("second apply changed something: %+v, %v", res, err)
	}
	users[0].SSHAuthorizedKeys = []string{"ssh-ed25519 AAAAnew alice@new"}
	users[0].Sudo = "none"
	users[1].Shell = "/usr/bin/zsh"
	if res, err = s.ApplyUsers(ctx, users); err != nil || len(res.Actions) != 3 {
		t.Fatalf("key and sudo change: %+v, %v", res, err)
	}
	keys := read(t, kp)
	if !strings.Contains(keys, "AAAAmine") || !strings.Contains(keys, "AAAAnew") || strings.Contains(keys, "laptop") {
		t.Fatalf("authorized_keys after a change:\n%s", keys)
	}
	if _, err := os.Stat(sp); !os.IsNotExist(err) {
		t.Fatal("sudo rule not removed for sudo none")
	}
	if bob, _ := s.lookupUser("bob"); bob == nil || bob.shell != "/usr/bin/zsh" {
		t.Fatalf("bob's shell not changed: %+v", bob)
	}
	if res, err = s.ApplyUsers(ctx, users); err != nil || res.Changed {
		t.Fatalf("apply after the change is not idempotent: %+v, %v", res, err)
	}

	bad := []struct {
		u    config.User
		want error
	}{
		{config.User{Name: "daemon"}, ErrSystemAccount},
		{config.User{Name: "Alice"}, ErrInvalidUser},
		{config.User{Name: "root"}, ErrInvalidUser},
		{config.User{Name: "carol", Password: "x", PasswordHash: "$6$a$b"}, ErrInvalidUser},
		{config.User{Name: "carol", Shell: "bin/sh"}, ErrInvalidUser},
		{config.User{Name: "carol", PasswordHash: "x:y"}, ErrInvalidUser},
		{config.User{Name: "carol", Sudo: "always"}, ErrInvalidUser},
		// The document's rules, which the weaker copies this package had
		// let through: an MD5 or truncated hash, a shell with a space.
		{config.User{Name: "carol", PasswordHash: "$1$saltsalt$qwertyuiopasdfghjklzx."}, ErrInvalidUser},
		{config.User{Name: "carol", PasswordHash: "$6$salt$short"}, ErrInvalidUser},
		{config.User{Name: "carol", Shell: "/bin/sh -c"}, ErrInvalidUser},
		{config.User{Name: "carol", Groups: []string{"Wheel"}}, ErrInvalidUser},
	}
	for _, b := range bad {
		_, err := s.ApplyUsers(ctx, []config.User{b.u})
		if !errors.Is(err, b.want) || !strings.Contains(err.Error(), `"`+b.u.Name+`"`) {
			t.Errorf("user %+v: err %v, want %v naming the user", b.u, err, b.want)
		}
	}
}

type visudoRunner struct {
	fakeRunner
	fail bool
}

func (v *visudoRunner) Run(ctx context.Context, c run.Cmd) ([]byte, error) {
	v.fakeRunner.Run(ctx, c)
	if v.fail {
		return nil, errors.New("visudo: syntax error")
	}
	return nil, nil
}

func TestSudoRuleCheckedByVisudo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: the drop-in is chowned to root; skipped as non-root")
	}
	root := scratchRoot(t)
	p := filepath.Join(root, "etc/sudoers.d/prewarm-alice")
	for _, fail := range []bool{true, false} {
		r := &visudoRunner{fakeRunner: fakeRunner{avail: []string{"visudo"}}, fail: fail}
		s := New(Options{Root: root, Runner: r, Logger: testLogger(t)})
		_, err := s.ensureSudo(context.Background(), config.User{Name: "alice", Sudo: "nopasswd"})
		if len(r.cmds) != 1 || r.cmds[0].Name != "visudo" || r.cmds[0].Args[0] != "-cf" || !strings.HasPrefix(filepath.Base(r.cmds[0].Args[1]), ".prewarm-alice.") {
			t.Fatalf("visudo not run on the temporary file: %v", r.cmds)
		}
		_, statErr := os.Stat(p)
		if fail && (err == nil || statErr == nil) {
			t.Fatalf("a rule visudo rejects was installed (err %v)", err)
		}
		if !fail && (err != nil || statErr != nil) {
			t.Fatalf("a rule visudo accepts was not installed: %v %v", err, statErr)
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("left-over files in sudoers.d: %v", ents)
	}
}
