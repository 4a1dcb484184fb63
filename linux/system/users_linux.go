package system

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/authkeys"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/shared/config"
	"golang.org/x/sys/unix"
)

// ErrBrokenKeyBlock is returned for an authorized_keys file whose markers
// do not pair up into at most one block: the rule of package authkeys,
// which Windows follows too.
var ErrBrokenKeyBlock = authkeys.ErrBrokenBlock

type passwdEnt struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

// readColon reads a colon-separated database of the target root.
func (s *System) readColon(p string) ([][]string, error) {
	b, err := os.ReadFile(s.path(p))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.Split(l, ":"))
	}
	return out, sc.Err()
}

func (s *System) lookupUser(name string) (*passwdEnt, error) {
	rows, err := s.readColon("/etc/passwd")
	if err != nil {
		return nil, err
	}
	for _, f := range rows {
		if len(f) >= 7 && f[0] == name {
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			return &passwdEnt{name: name, uid: uid, gid: gid, home: f[5], shell: f[6]}, nil
		}
	}
	return nil, nil
}

// groups returns every group name and, for user, the groups listing it.
func (s *System) groups(user string) (all map[string]bool, member map[string]bool, err error) {
	rows, err := s.readColon("/etc/group")
	if err != nil {
		return nil, nil, err
	}
	all, member = map[string]bool{}, map[string]bool{}
	for _, f := range rows {
		if len(f) < 4 {
			continue
		}
		all[f[0]] = true
		if slices.Contains(strings.Split(f[3], ","), user) {
			member[f[0]] = true
		}
	}
	return all, member, nil
}

func (s *System) shadowHash(user string) (string, error) {
	rows, err := s.readColon("/etc/shadow")
	if err != nil {
		return "", err
	}
	for _, f := range rows {
		if len(f) >= 2 && f[0] == user {
			return f[1], nil
		}
	}
	return "", nil
}

// ApplyUsers implements agent.UserManager. Every user is tried; the step
// fails with every user's error joined.
func (s *System) ApplyUsers(ctx context.Context, users []config.User) (agent.StepResult, error) {
	var res agent.StepResult
	rec, err := s.loadRecord()
	if err != nil {
		return res, err
	}
	var errs []error
	for _, u := range users {
		acts, err := s.ensureUser(ctx, u, rec)
		res.Actions = append(res.Actions, acts...)
		if err != nil {
			s.log.Warn("ensure user failed", "user", u.Name, "err", err)
			errs = append(errs, err)
		}
	}
	res.Changed = len(res.Actions) > 0
	return res, errors.Join(errs...)
}

func (s *System) cmd(ctx context.Context, name string, stdin []byte, args ...string) error {
	_, err := s.o.Runner.Run(ctx, run.Cmd{Name: name, Args: append(s.rootArgs(), args...), Stdin: stdin})
	return err
}

func (s *System) ensureUser(ctx context.Context, u config.User, rec *usersRecord) (acts []string, err error) {
	name := u.Name
	fail := func(err error) ([]string, error) { return acts, fmt.Errorf("user %q: %w", name, err) }
	// The document's own rules (package config) and the key-line rule of
	// package authkeys, again, for a user that never went through
	// validation: the same functions, not copies of them. Which existing
	// accounts are off limits (system accounts) is mayManage's to say.
	if !config.ValidUserName(name) || name == "root" {
		return fail(ErrInvalidUser)
	}
	if u.Shell != "" && !config.ValidShell(u.Shell) {
		return fail(fmt.Errorf("shell %q: %w", u.Shell, ErrInvalidUser))
	}
	if u.Password != "" && u.PasswordHash != "" {
		return fail(fmt.Errorf("both password and passwordHash: %w", ErrInvalidUser))
	}
	if h := u.PasswordHash; h != "" && !config.ValidPasswordHash(h) {
		return fail(fmt.Errorf("passwordHash is not a crypt(3) string ($6$, $5$ or $y$): %w", ErrInvalidUser))
	}
	for _, g := range u.Groups {
		if !config.ValidUserName(g) {
			return fail(fmt.Errorf("group %q: %w", g, ErrInvalidUser))
		}
	}
	for _, k := range u.SSHAuthorizedKeys {
		if err := authkeys.CheckKey(k); err != nil {
			return fail(fmt.Errorf("malformed SSH key: %w: %w", ErrInvalidUser, err))
		}
	}
	pw, err := s.lookupUser(name)
	if err != nil {
		return fail(err)
	}
	if pw != nil {
		if err := s.mayManage(pw, rec); err != nil {
			return fail(err)
		}
	}
	all, member, err := s.groups(name)
	if err != nil {
		return fail(err)
	}
	for _, g := range u.Groups {
		if !all[g] {
			if err := s.cmd(ctx, "groupadd", nil, g); err != nil {
				return fail(fmt.Errorf("create group %q: %w", g, err))
			}
			acts = append(acts, "groupadd "+g)
		}
	}
	if pw == nil {
		args := []string{"--create-home"}
		if u.Shell != "" {
			args = append(args, "--shell", u.Shell)
		}
		if len(u.Groups) > 0 {
			args = append(args, "--groups", strings.Join(u.Groups, ","))
		}
		// Recorded before it exists, completed once it does: see createdUser.
		if i := rec.find(name); i < 0 {
			rec.Created = append(rec.Created, createdUser{Name: name})
		} else {
			rec.Created[i].UID = 0 // an account of ours that was deleted
		}
		if err := s.saveRecord(rec); err != nil {
			return fail(err)
		}
		if err := s.cmd(ctx, "useradd", nil, append(args, name)...); err != nil {
			// useradd may fail after it wrote the account (exit 12: no
			// home directory). Such an account did not exist before: it
			// is the agent's, or the next generation would refuse it.
			if pw, lerr := s.lookupUser(name); lerr == nil && pw != nil {
				rec.Created[rec.find(name)].UID = pw.uid
			} else {
				rec.Created = slices.DeleteFunc(rec.Created, func(c createdUser) bool { return c.Name == name })
			}
			if serr := s.saveRecord(rec); serr != nil {
				s.log.Warn("updating the record of a user useradd failed to create", "user", name, "err", serr)
			}
			return fail(fmt.Errorf("create: %w", err))
		}
		acts = append(acts, "useradd "+name)
		if pw, err = s.lookupUser(name); err != nil || pw == nil {
			return fail(fmt.Errorf("created but not found in /etc/passwd: %v", err))
		}
		rec.Created[rec.find(name)].UID = pw.uid
		if err := s.saveRecord(rec); err != nil {
			return fail(err)
		}
	} else {
		if u.Shell != "" && pw.shell != u.Shell {
			if err := s.cmd(ctx, "usermod", nil, "--shell", u.Shell, name); err != nil {
				return fail(fmt.Errorf("set shell: %w", err))
			}
			acts = append(acts, "set shell of "+name)
		}
		var missing []string
		for _, g := range u.Groups {
			if !member[g] {
				missing = append(missing, g)
			}
		}
		if len(missing) > 0 {
			if err := s.cmd(ctx, "usermod", nil, "--append", "--groups", strings.Join(missing, ","), name); err != nil {
				return fail(fmt.Errorf("add to groups: %w", err))
			}
			acts = append(acts, "add "+name+" to "+strings.Join(missing, ","))
		}
	}
	if a, err := s.ensurePassword(ctx, u); err != nil {
		return fail(err)
	} else if a != "" {
		acts = append(acts, a)
	}
	if a, err := s.ensureSudo(ctx, u); err != nil {
		return fail(err)
	} else if a != "" {
		acts = append(acts, a)
	}
	if u.SSHAuthorizedKeys != nil {
		a, err := s.ensureKeys(pw, u.SSHAuthorizedKeys)
		acts = append(acts, a...)
		if err != nil {
			return fail(err)
		}
	}
	return acts, nil
}

// ensurePassword sets the hash through chpasswd -e, on stdin only. A
// plaintext password is hashed here first (SHA-512 crypt); it is compared
// with the current hash so that a second run changes nothing.
func (s *System) ensurePassword(ctx context.Context, u config.User) (string, error) {
	if u.Password == "" && u.PasswordHash == "" {
		return "", nil
	}
	cur, err := s.shadowHash(u.Name)
	if err != nil {
		return "", err
	}
	hash := u.PasswordHash
	if u.Password != "" {
		if ok, _ := matchSHA512(u.Password, cur); ok {
			return "", nil
		}
		if hash, err = hashPassword(u.Password); err != nil {
			return "", err
		}
	} else if cur == hash {
		return "", nil
	}
	if err := s.cmd(ctx, "chpasswd", []byte(u.Name+":"+hash+"\n"), "--encrypted"); err != nil {
		return "", fmt.Errorf("set password: %w", err)
	}
	return "set password of " + u.Name, nil
}

// ensureSudo keeps /etc/sudoers.d/prewarm-<user> (0440), checked with
// visudo -cf before it is renamed into place when visudo is installed.
func (s *System) ensureSudo(ctx context.Context, u config.User) (string, error) {
	p := s.path("/etc/sudoers.d/prewarm-" + u.Name)
	var rule string
	switch u.SudoLevel() {
	case config.SudoNone:
		if removed, err := fsx.Remove(p); err != nil {
			return "", err
		} else if removed {
			return "remove sudo rule of " + u.Name, nil
		}
		return "", nil
	case config.SudoPassword:
		rule = u.Name + " ALL=(ALL:ALL) ALL\n"
	case config.SudoNoPasswd:
		rule = u.Name + " ALL=(ALL:ALL) NOPASSWD:ALL\n"
	default:
		return "", fmt.Errorf("sudo %q: %w", u.Sudo, ErrInvalidUser)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return "", err
	}
	content := []byte("# Managed by prewarm-agent; rewritten on every apply.\n" + rule)
	o := fsx.WriteOptions{Mode: 0o440, Chown: true}
	if s.available("visudo") {
		o.Validate = func(tmp string) error {
			_, err := s.o.Runner.Run(ctx, run.Cmd{Name: "visudo", Args: []string{"-cf", tmp}})
			return err
		}
	}
	changed, err := fsx.WriteFile(p, content, o)
	if err != nil {
		return "", fmt.Errorf("sudo rule: %w", err)
	}
	if changed {
		return "set sudo rule of " + u.Name, nil
	}
	return "", nil
}

// maxKeysSize caps the authorized_keys file the agent reads: it is the
// user's file, and the agent reads it as root.
const maxKeysSize = 1 << 20

// ensureKeys keeps the agent's block of ~/.ssh/authorized_keys equal to
// keys; lines outside the block are the user's and stay as they are.
//
// The user owns the home directory and may swap anything in it for a
// symlink or a hard link at any moment, so nothing here acts on a path
// that was checked before: the home directory is opened without following
// a symlink at its last component, and .ssh and authorized_keys are
// opened, checked, chowned, chmodded, read and replaced through
// descriptors (openat O_NOFOLLOW, fstat, fchown, fchmod, renameat within
// the .ssh descriptor).
func (s *System) ensureKeys(pw *passwdEnt, keys []string) ([]string, error) {
	var acts []string
	home, err := fsx.OpenDirNoFollow(s.o.Root, pw.home)
	if err != nil {
		return acts, fmt.Errorf("home %s is not a directory: %w", pw.home, err)
	}
	defer unix.Close(home)
	dirName := pw.home + "/.ssh"
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	dir, err := unix.Openat(home, ".ssh", dirFlags, 0)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(home, ".ssh", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return acts, fmt.Errorf("create %s: %w", dirName, err)
		}
		acts = append(acts, "create "+dirName)
		dir, err = unix.Openat(home, ".ssh", dirFlags, 0)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return acts, fmt.Errorf("%s is not a directory (a symlink?); refusing", dirName)
	}
	if err != nil {
		return acts, fmt.Errorf("open %s: %w", dirName, err)
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if err := unix.Fstat(dir, &st); err != nil {
		return acts, fmt.Errorf("stat %s: %w", dirName, err)
	}
	if st.Mode&0o7777 != 0o700 || int(st.Uid) != pw.uid || int(st.Gid) != pw.gid {
		if err := unix.Fchown(dir, pw.uid, pw.gid); err != nil {
			return acts, fmt.Errorf("chown %s: %w", dirName, err)
		}
		if err := unix.Fchmod(dir, 0o700); err != nil {
			return acts, fmt.Errorf("chmod %s: %w", dirName, err)
		}
		if len(acts) == 0 {
			acts = append(acts, "fix owner and mode of "+dirName)
		}
	}
	name := dirName + "/authorized_keys"
	old, cur, err := readKeys(dir, name, pw)
	if err != nil {
		return acts, err
	}
	data, _, err := authkeys.Managed.Set(old, keys, "\n")
	if err != nil {
		return acts, fmt.Errorf("%s: %w; refusing to change it", name, err)
	}
	if cur != nil && bytes.Equal(old, data) && cur.Mode&0o7777 == 0o600 && int(cur.Uid) == pw.uid && int(cur.Gid) == pw.gid {
		return acts, nil
	}
	if err := replaceAt(dir, "authorized_keys", data, 0o600, pw.uid, pw.gid); err != nil {
		return acts, fmt.Errorf("write %s: %w", name, err)
	}
	return append(acts, "set authorized keys of "+pw.name), nil
}

// readKeys reads authorized_keys in the .ssh directory dir. It refuses
// anything but a regular file with one link, owned by the user or root,
// of at most maxKeysSize bytes. A missing file reads as nil with a nil
// stat.
func readKeys(dir int, name string, pw *passwdEnt) ([]byte, *unix.Stat_t, error) {
	// O_NONBLOCK: a FIFO must not hang the agent before fstat refuses it.
	fd, err := unix.Openat(dir, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil, nil
	case errors.Is(err, unix.ELOOP):
		return nil, nil, fmt.Errorf("%s is a symlink; refusing", name)
	case err != nil:
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", name, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, nil, fmt.Errorf("%s is not a regular file; refusing", name)
	case st.Nlink != 1:
		return nil, nil, fmt.Errorf("%s has %d hard links; refusing", name, st.Nlink)
	case int(st.Uid) != pw.uid && st.Uid != 0:
		return nil, nil, fmt.Errorf("%s is owned by uid %d, not by %s or root; refusing", name, st.Uid, pw.name)
	case st.Size > maxKeysSize:
		return nil, nil, fmt.Errorf("%s is larger than %d bytes; refusing", name, maxKeysSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeysSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxKeysSize {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes; refusing", name, maxKeysSize)
	}
	return b, &st, nil
}

// replaceAt atomically replaces name in directory dir with data: a new
// temporary file created in dir (O_EXCL|O_NOFOLLOW), written, chowned,
// chmodded, fsynced, then renamed over name within dir.
func replaceAt(dir int, name string, data []byte, mode uint32, uid, gid int) error {
	tmp, fd := "", -1
	for range 100 {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return err
		}
		tmp = "." + name + ".prewarm-" + hex.EncodeToString(r[:])
		var err error
		fd, err = unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if fd < 0 {
		return errors.New("no free temporary name")
	}
	f := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		if !ok {
			f.Close()
			unix.Unlinkat(dir, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		unix.Unlinkat(dir, tmp, 0)
		ok = true
		return err
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		unix.Unlinkat(dir, tmp, 0)
		ok = true
		return err
	}
	ok = true
	unix.Fsync(dir)
	return nil
}
