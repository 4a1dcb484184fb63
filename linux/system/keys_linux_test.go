package system

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/prewarm/prewarm/shared/config"
	"golang.org/x/sys/unix"
)

// keysBegin and keysEnd are the markers on disk, spelled out rather than
// taken from authkeys.Managed: guests' existing files hold them.
const (
	keysBegin = "# BEGIN prewarm-agent managed keys (do not edit inside this block)"
	keysEnd   = "# END prewarm-agent managed keys"
)

// The user of the authorized_keys tests: an unprivileged account of the
// scratch root only, whose home is its own and who plays the attacker.
// The agent did not create it, so the tests list it in
// Options.ManageExistingUsers.
const (
	kUser = "mallory"
	kUID  = 4242
	kGID  = 4242
	kKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIagent agent@prewarm"
)

// keysRoot (ROOT TEST: it chowns) makes a scratch root with kUser in its
// /etc/passwd and /home/mallory owned by kUser, plus a root-only secret
// file outside the home (/etc/secret, 0600) and a root-owned directory
// outside it (/srv/outside, 0755). It returns the root and the home.
func keysRoot(t *testing.T) (root, home string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ROOT TEST: chowns to another uid; skipped as non-root")
	}
	root = scratchRoot(t)
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(read(t, filepath.Join(root, "etc/passwd")), "\n"), "\n") {
		if !strings.HasPrefix(l, kUser+":") {
			lines = append(lines, l)
		}
	}
	lines = append(lines, kUser+":x:4242:4242::/home/"+kUser+":/bin/sh")
	must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	home = filepath.Join(root, "home", kUser)
	must(t, os.Mkdir(home, 0o755))
	must(t, os.Chown(home, kUID, kGID))
	must(t, os.WriteFile(filepath.Join(root, "etc/secret"), []byte("root:$6$secret-hash:19000::::::\n"), 0o600))
	must(t, os.MkdirAll(filepath.Join(root, "srv/outside"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "srv/outside/authorized_keys"), []byte("outside\n"), 0o644))
	return root, home
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func applyKeys(t *testing.T, root string) error {
	t.Helper()
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t), ManageExistingUsers: []string{kUser}})
	_, err := s.ApplyUsers(context.Background(), []config.User{{Name: kUser, SSHAuthorizedKeys: []string{kKey}}})
	return err
}

// wantRefused checks that err is the step failing, naming the user and
// every word of what.
func wantRefused(t *testing.T, err error, what ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("the step succeeded; want it refused")
	}
	for _, w := range append([]string{`"` + kUser + `"`}, what...) {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not name %q", err, w)
		}
	}
}

type fileState struct {
	mode     os.FileMode
	uid, gid uint32
	nlink    uint64
	data     string
	entries  []string
}

// state is what the tests compare before and after: mode, owner, links
// and content (or the entries of a directory), without following p.
func state(t *testing.T, p string) fileState {
	t.Helper()
	st, err := os.Lstat(p)
	must(t, err)
	sys := st.Sys().(*syscall.Stat_t)
	fs := fileState{mode: st.Mode(), uid: sys.Uid, gid: sys.Gid, nlink: uint64(sys.Nlink)}
	switch {
	case st.IsDir():
		ents, err := os.ReadDir(p)
		must(t, err)
		for _, e := range ents {
			fs.entries = append(fs.entries, e.Name())
		}
	case st.Mode().IsRegular():
		fs.data = read(t, p)
	}
	return fs
}

func sameState(t *testing.T, p string, before fileState) {
	t.Helper()
	if after := state(t, p); !equalState(before, after) {
		t.Fatalf("%s changed: %+v -> %+v", p, before, after)
	}
}

func equalState(a, b fileState) bool {
	return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.nlink == b.nlink && a.data == b.data && strings.Join(a.entries, "/") == strings.Join(b.entries, "/")
}

// TestKeysBaseline: the fixture itself works, so the refusals below are
// refusals and not a broken fixture: keys are installed 0600 in a 0700
// .ssh owned by the user, and a second apply changes nothing.
func TestKeysBaseline(t *testing.T) {
	root, home := keysRoot(t)
	must(t, applyKeys(t, root))
	dir := state(t, filepath.Join(home, ".ssh"))
	if dir.mode != os.ModeDir|0o700 || dir.uid != kUID || dir.gid != kGID {
		t.Fatalf(".ssh: %+v", dir)
	}
	f := state(t, filepath.Join(home, ".ssh/authorized_keys"))
	if f.mode != 0o600 || f.uid != kUID || f.gid != kGID || f.data != keysBegin+"\n"+kKey+"\n"+keysEnd+"\n" {
		t.Fatalf("authorized_keys: %+v", f)
	}
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t), ManageExistingUsers: []string{kUser}})
	if res, err := s.ApplyUsers(context.Background(), []config.User{{Name: kUser, SSHAuthorizedKeys: []string{kKey}}}); err != nil || res.Changed {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
	// A root-owned file with a wrong mode is taken over and fixed.
	p := filepath.Join(home, ".ssh/authorized_keys")
	must(t, os.Chown(p, 0, 0))
	must(t, os.Chmod(p, 0o644))
	must(t, applyKeys(t, root))
	if f := state(t, p); f.mode != 0o600 || f.uid != kUID {
		t.Fatalf("authorized_keys not fixed: %+v", f)
	}
	if ents, _ := os.ReadDir(filepath.Join(home, ".ssh")); len(ents) != 1 {
		t.Fatalf("temporary files left in .ssh: %v", ents)
	}
}

// TestKeysSSHSymlinkOutsideHome: ~/.ssh is a symlink to a root-owned
// directory or to a root-only file outside the home. Neither is chowned,
// chmodded, read or written; the step fails naming the user.
func TestKeysSSHSymlinkOutsideHome(t *testing.T) {
	for _, target := range []string{"srv/outside", "etc/secret"} {
		t.Run(filepath.Base(target), func(t *testing.T) {
			root, home := keysRoot(t)
			tp := filepath.Join(root, target)
			before := state(t, tp)
			must(t, os.Symlink(tp, filepath.Join(home, ".ssh")))
			wantRefused(t, applyKeys(t, root), ".ssh")
			sameState(t, tp, before)
			if fi, err := os.Lstat(filepath.Join(home, ".ssh")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("~/.ssh is no longer the user's symlink: %v %v", fi, err)
			}
		})
	}
}

// TestKeysHomeSymlink: the home itself being a symlink (the last
// component) is not followed either.
func TestKeysHomeSymlink(t *testing.T) {
	root, home := keysRoot(t)
	must(t, os.Remove(home))
	out := filepath.Join(root, "srv/outside")
	before := state(t, out)
	must(t, os.Symlink(out, home))
	wantRefused(t, applyKeys(t, root), "home")
	sameState(t, out, before)
}

// TestKeysHomeBehindAbsoluteSymlinkStaysInRoot: an absolute symlink in a
// component before the home (/home -> /<name>, as on systems with
// /home -> /var/home) resolves inside the target root, never on the host.
func TestKeysHomeBehindAbsoluteSymlinkStaysInRoot(t *testing.T) {
	root, _ := keysRoot(t)
	moved := "/prewarm-test-home-" + filepath.Base(root) // random: absent on the host
	if _, err := os.Lstat(moved); err == nil {
		t.Skipf("%s exists on this machine", moved)
	}
	must(t, os.Rename(filepath.Join(root, "home"), filepath.Join(root, moved)))
	must(t, os.Symlink(moved, filepath.Join(root, "home")))
	must(t, applyKeys(t, root))
	if _, err := os.Lstat(moved); err == nil {
		t.Fatalf("%s was created on this machine", moved)
	}
	real := filepath.Join(root, moved, kUser, ".ssh/authorized_keys")
	if f := state(t, real); f.uid != kUID || !strings.Contains(f.data, kKey) {
		t.Fatalf("authorized_keys in the root: %+v", f)
	}
}

// TestKeysAuthorizedKeysLinksRefused: authorized_keys that is a symlink
// or a hard link to a root-only file is refused: the file is neither read
// into the user's authorized_keys nor replaced, and its target is left as
// it is.
func TestKeysAuthorizedKeysLinksRefused(t *testing.T) {
	for _, kind := range []string{"symlink", "hardlink"} {
		t.Run(kind, func(t *testing.T) {
			root, home := keysRoot(t)
			dir := filepath.Join(home, ".ssh")
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, kUID, kGID))
			secret := filepath.Join(root, "etc/secret")
			p := filepath.Join(dir, "authorized_keys")
			link, want := os.Symlink, "symlink"
			if kind == "hardlink" {
				link, want = os.Link, "hard link"
			}
			must(t, link(secret, p))
			before, beforeLink := state(t, secret), state(t, p)
			wantRefused(t, applyKeys(t, root), "authorized_keys", want)
			sameState(t, secret, before)
			sameState(t, p, beforeLink)
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("files left in .ssh: %v", ents)
			}
		})
	}
}

// TestKeysAuthorizedKeysOversizedRefused: a user's authorized_keys above
// the cap is not read; the step fails naming the user and the file.
func TestKeysAuthorizedKeysOversizedRefused(t *testing.T) {
	root, home := keysRoot(t)
	dir := filepath.Join(home, ".ssh")
	must(t, os.Mkdir(dir, 0o700))
	must(t, os.Chown(dir, kUID, kGID))
	p := filepath.Join(dir, "authorized_keys")
	big := bytes.Repeat([]byte("ssh-ed25519 AAAA padding\n"), maxKeysSize/24+2)
	must(t, os.WriteFile(p, big, 0o600))
	must(t, os.Chown(p, kUID, kGID))
	before := state(t, p)
	wantRefused(t, applyKeys(t, root), "/home/"+kUser+"/.ssh/authorized_keys", "larger than")
	sameState(t, p, before)
}

// TestKeysAuthorizedKeysOddFilesRefused: a file owned by another user,
// a FIFO (which must not hang the agent) and a directory are refused.
func TestKeysAuthorizedKeysOddFilesRefused(t *testing.T) {
	for _, kind := range []string{"other-owner", "fifo", "dir"} {
		t.Run(kind, func(t *testing.T) {
			root, home := keysRoot(t)
			dir := filepath.Join(home, ".ssh")
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, kUID, kGID))
			p := filepath.Join(dir, "authorized_keys")
			want := "not a regular file"
			switch kind {
			case "other-owner":
				must(t, os.WriteFile(p, []byte("theirs\n"), 0o600))
				must(t, os.Chown(p, kUID+1, kGID+1))
				want = "owned by uid"
			case "fifo":
				must(t, unix.Mkfifo(p, 0o600))
			case "dir":
				must(t, os.Mkdir(p, 0o700))
			}
			before := state(t, p)
			done := make(chan error, 1)
			go func() { done <- applyKeys(t, root) }()
			select {
			case err := <-done:
				wantRefused(t, err, "authorized_keys", want)
			case <-time.After(10 * time.Second):
				t.Fatal("the step hangs")
			}
			sameState(t, p, before)
		})
	}
}

// swapper exchanges two names in dir (renameat2 RENAME_EXCHANGE) as fast
// as it can until stopped, calling reset before each exchange: the user
// racing the agent between its check and its use of a path.
func swapper(t *testing.T, dir, a, b string, reset func()) (stop func()) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	for range 2 { // a no-op pair, to skip where the filesystem cannot exchange
		if err := unix.Renameat2(fd, a, fd, b, unix.RENAME_EXCHANGE); err != nil {
			unix.Close(fd)
			t.Skipf("renameat2 RENAME_EXCHANGE: %v", err)
		}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer unix.Close(fd)
		for {
			select {
			case <-quit:
				return
			default:
			}
			reset()
			if err := unix.Renameat2(fd, a, fd, b, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange: %v", err)
				return
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// raceFor runs the agent's step against the swapper for d, or until bad
// reports the attack worked.
func raceFor(t *testing.T, root string, d time.Duration, bad func() bool) {
	t.Helper()
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: slogDiscard(), ManageExistingUsers: []string{kUser}})
	u := []config.User{{Name: kUser, SSHAuthorizedKeys: []string{kKey}}}
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		s.ApplyUsers(context.Background(), u)
		if bad() {
			t.Errorf("the attack worked after %d applies", n+1)
			return
		}
	}
	t.Logf("%d applies raced", n)
}

// TestKeysSSHSwapRace: the user keeps exchanging ~/.ssh (a root-owned
// 0755 directory, so the agent wants to chown and chmod it) with a symlink
// to a root-owned directory outside the home. The outside directory is
// never chowned, chmodded or written into.
func TestKeysSSHSwapRace(t *testing.T) {
	root, home := keysRoot(t)
	out := filepath.Join(root, "srv/outside")
	before := state(t, out)
	dir := filepath.Join(home, ".ssh")
	must(t, os.Mkdir(dir, 0o755))
	real, err := os.Open(dir)
	must(t, err)
	defer real.Close()
	must(t, os.Symlink(out, filepath.Join(home, "alt")))
	stop := swapper(t, home, ".ssh", "alt", func() {
		real.Chown(0, 0)
		real.Chmod(0o755)
	})
	raceFor(t, root, time.Second, func() bool { return !equalState(before, state(t, out)) })
	stop()
	sameState(t, out, before)
}

// TestKeysAuthorizedKeysSwapRace: the user keeps exchanging their regular
// authorized_keys with a symlink to a root-only file. The file is never
// read into the user's authorized_keys, nor changed.
func TestKeysAuthorizedKeysSwapRace(t *testing.T) {
	root, home := keysRoot(t)
	secret := filepath.Join(root, "etc/secret")
	before := state(t, secret)
	dir := filepath.Join(home, ".ssh")
	must(t, os.Mkdir(dir, 0o700))
	must(t, os.Chown(dir, kUID, kGID))
	p := filepath.Join(dir, "authorized_keys")
	must(t, os.WriteFile(p, []byte("ssh-ed25519 AAAAmine mallory@home\n"), 0o600))
	must(t, os.Chown(p, kUID, kGID))
	must(t, os.Symlink(secret, filepath.Join(dir, "alt")))
	leaked := func() bool {
		// The test must not follow the swapped symlink itself either.
		for _, n := range []string{"authorized_keys", "alt"} {
			fd, err := unix.Open(filepath.Join(dir, n), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			f := os.NewFile(uintptr(fd), n)
			b, _ := io.ReadAll(f)
			f.Close()
			if bytes.Contains(b, []byte("secret-hash")) {
				return true
			}
		}
		return !equalState(before, state(t, secret))
	}
	stop := swapper(t, dir, "authorized_keys", "alt", func() {})
	raceFor(t, root, time.Second, leaked)
	stop()
	if leaked() {
		t.Fatal("the root-only file leaked into the user's authorized_keys")
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestKeysUnterminatedBlockRefused (ROOT TEST): the user's authorized_keys
// holds the BEGIN marker without its END, with the user's own keys after
// it. The step fails naming the user and the file, and the file is left
// exactly as it was: no line the agent did not write is ever dropped.
func TestKeysUnterminatedBlockRefused(t *testing.T) {
	root, home := keysRoot(t)
	dir := filepath.Join(home, ".ssh")
	must(t, os.Mkdir(dir, 0o700))
	must(t, os.Chown(dir, kUID, kGID))
	p := filepath.Join(dir, "authorized_keys")
	content := "ssh-ed25519 AAAAmine-1 mallory@home\n" + keysBegin + "\nssh-ed25519 AAAAold agent@old\nssh-ed25519 AAAAmine-2 mallory@phone\nssh-ed25519 AAAAmine-3 mallory@work\n"
	must(t, os.WriteFile(p, []byte(content), 0o600))
	must(t, os.Chown(p, kUID, kGID))
	before := state(t, p)
	wantRefused(t, applyKeys(t, root), "/home/"+kUser+"/.ssh/authorized_keys", "no END")
	sameState(t, p, before)
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("files left in .ssh: %v", ents)
	}
}
