package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

var sshdMu sync.Mutex

// sshdServer returns a real sshd and the directory of the library it
// needs beside the machine's: Debian 12's openssh-server and libwrap0,
// fetched once with apt-get download into e2e/.cache/sshd and unpacked
// there (the machine runs no SSH server and the tests install none). It
// skips the test when they cannot be had (no apt, no mirror).
func sshdServer(t *testing.T) (sshd, libDir string) {
	t.Helper()
	sshdMu.Lock()
	defer sshdMu.Unlock()
	cache, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "sshd")
	find := func() (string, string, bool) {
		libs, _ := filepath.Glob(filepath.Join(dir, "*", "x86_64-linux-gnu", "libwrap.so.0"))
		libs2, _ := filepath.Glob(filepath.Join(dir, "usr", "lib", "x86_64-linux-gnu", "libwrap.so.0"))
		libs = append(libs, libs2...)
		p := filepath.Join(dir, "usr/sbin/sshd")
		if _, err := os.Stat(p); err != nil || len(libs) == 0 {
			return "", "", false
		}
		return p, filepath.Dir(libs[0]), true
	}
	if p, l, ok := find(); ok {
		return p, l
	}
	tmp, err := os.MkdirTemp(cache, ".sshd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", "download", "openssh-server", "libwrap0")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("sshd: apt-get download openssh-server libwrap0: %v: %s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	root := filepath.Join(tmp, "root")
	for _, d := range debs {
		mustRun(t, "dpkg-deb", "-x", d, root)
	}
	os.RemoveAll(dir)
	if err := os.Rename(root, dir); err != nil {
		t.Fatal(err)
	}
	p, l, ok := find()
	if !ok {
		t.Fatalf("sshd: no usr/sbin/sshd or libwrap.so.0 in %s", dir)
	}
	return p, l
}

// sshdConfig is the guest's sshd: its one host key (the image's type),
// keys only, no PAM (the guest has no PAM session of its own).
const sshdConfig = `Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
`

// keygenFingerprint is `ssh-keygen -l`'s fingerprint of a public key file.
func keygenFingerprint(t *testing.T, pub string) string {
	t.Helper()
	f := strings.Fields(mustRun(t, "ssh-keygen", "-l", "-f", pub))
	if len(f) < 2 {
		t.Fatalf("ssh-keygen -l -f %s: no fingerprint", pub)
	}
	return f[1]
}

// TestSSHHostKeys is issue 18 §1 against a real sshd in the guest: the
// pooled guest reports the image's host key with partial-ready; the
// claim's document asks for new keys; provisioned reports new ones, which
// are the keys sshd serves (ssh-keyscan from the host, after the agent's
// SIGHUP made sshd load them); `prewarm-imds known-hosts` gives a
// known_hosts with which ssh logs in with StrictHostKeyChecking=yes, while
// the image's old key fails host key verification.
func TestSSHHostKeys(t *testing.T) {
	RequireRoot(t)
	for _, c := range []string{"ssh-keygen", "ssh-keyscan", "ssh"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed (openssh-client)", c)
		}
	}
	sshd, libDir := sshdServer(t)
	l := NewLab(t, 1)
	g := l.Guests[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Bake the image: one ed25519 host key, sshd's privilege separation
	// user and directory, its config.
	keys, _ := filepath.Glob(g.Path("/etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	if err := os.MkdirAll(g.Path("/etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@golden", "-f", g.Path("/etc/ssh/ssh_host_ed25519_key"))
	baked := keygenFingerprint(t, g.Path("/etc/ssh/ssh_host_ed25519_key.pub"))
	bakedPub, _ := os.ReadFile(g.Path("/etc/ssh/ssh_host_ed25519_key.pub"))
	if err := os.WriteFile(g.Path("/etc/ssh/sshd_config"), []byte(sshdConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(g.Path("/run/sshd"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(g.Path("/etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("sshd:x:991:65534::/run/sshd:/usr/sbin/nologin\n")
	f.Close()

	rep := bootGuest(t, ctx, l, g)
	// sshd by its absolute path: on SIGHUP it executes itself again.
	sshdProc := g.Start("sshd", "env", "LD_LIBRARY_PATH="+libDir, sshd, "-D", "-e", "-f", "/etc/ssh/sshd_config")
	addrs, err := g.Addrs(ctx)
	if err != nil || len(addrs) == 0 {
		t.Fatalf("guest address: %v %v", addrs, err)
	}
	addr := strings.SplitN(addrs[0], "/", 2)[0]
	hostNS := "--net=" + l.HostNS.Path()
	// scan returns the fingerprint of the ed25519 key sshd serves, asking
	// from the host namespace until it answers with want (or any key, for
	// want ""), bounded.
	scan := func(want string) string {
		t.Helper()
		var last string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			out, _ := run(ctx, "nsenter", hostNS, "--", "ssh-keyscan", "-T", "2", "-t", "ed25519", addr)
			if strings.TrimSpace(out) == "" {
				continue
			}
			kh := filepath.Join(t.TempDir(), "scan")
			if err := os.WriteFile(kh, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			last = keygenFingerprint(t, kh)
			if want == "" || last == want {
				return last
			}
		}
		t.Fatalf("ssh-keyscan %s: served %q, want %q", addr, last, want)
		return ""
	}
	if got := scan(""); got != baked {
		t.Fatalf("sshd serves %s before the claim, the image's key is %s", got, baked)
	}

	// The pool: partial-ready carries the image's key.
	gen1 := l.Publish(ctx, g.ID, partialDoc())
	a := awaitSettled(t, ctx, rep, gen1, status.StatePartialReady)
	if len(a.SSHHostKeys) != 1 || a.SSHHostKeys[0].Fingerprint != baked {
		t.Fatalf("partial-ready reports %+v, the image's key is %s", a.SSHHostKeys, baked)
	}

	// The claim: new keys, reported by provisioned and served by sshd.
	keyDir := t.TempDir()
	aliceKey := filepath.Join(keyDir, "alice")
	mustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", aliceKey)
	alicePub, err := os.ReadFile(aliceKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	gen2 := l.Publish(ctx, g.ID, Doc{
		"hostname":    "web-01",
		"sshHostKeys": Doc{"regenerate": 1},
		"users": []Doc{{"name": "alice", "shell": "/bin/sh", "passwordHash": TestPasswordHash,
			"sshAuthorizedKeys": []string{strings.TrimSpace(string(alicePub))}}},
	})
	a = awaitSettled(t, ctx, rep, gen2, status.StateProvisioned)
	fresh := keygenFingerprint(t, g.Path("/etc/ssh/ssh_host_ed25519_key.pub"))
	if fresh == baked {
		t.Fatal("the host key was not regenerated")
	}
	if len(a.SSHHostKeys) != 1 || a.SSHHostKeys[0].Fingerprint != fresh {
		t.Fatalf("provisioned reports %+v, the guest's new key is %s", a.SSHHostKeys, fresh)
	}
	var step *status.Step
	for i := range a.Steps {
		if a.Steps[i].Name == status.StepSSHHostKeys {
			step = &a.Steps[i]
		}
	}
	if step == nil || !step.OK || !step.Changed {
		t.Errorf("provisioned steps %+v: want an ok, changed %s step", a.Steps, status.StepSSHHostKeys)
	}
	// sshd read the new key because the agent told it to (OpenSSH 9.8 and
	// later serve only the keys loaded at start or on SIGHUP; 9.2 here
	// would also read them per connection).
	hup, cancelHup := context.WithTimeout(ctx, 10*time.Second)
	_, _, err = sshdProc.Log.WaitFrom(hup, 0, "Received SIGHUP; restarting.")
	cancelHup()
	if err != nil {
		t.Errorf("sshd did not get the agent's SIGHUP: %v", err)
	}
	scan(fresh)
	t.Logf("host key %s (image) -> %s (reported with provisioned, served by sshd)", baked, fresh)

	// The tenant: known_hosts from the IMDS, then a strict ssh login.
	out := mustRun(t, Bins(t).IMDS, "known-hosts", g.ID, "--host", addr, "--admin-socket", l.AdminSock)
	good := filepath.Join(keyDir, "known_hosts")
	if err := os.WriteFile(good, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	sshTo := func(knownHosts string) (string, error) {
		cmd := exec.CommandContext(ctx, "nsenter", hostNS, "--", "ssh", "-F", "/dev/null",
			"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes", "-i", aliceKey,
			"alice@"+addr, "echo", "logged-in-as", "$(id -un)")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := sshTo(good); err != nil || !strings.Contains(out, "logged-in-as alice") {
		t.Fatalf("ssh with the known-hosts output: %v: %s", err, out)
	}
	stale := filepath.Join(keyDir, "known_hosts.image")
	fields := strings.Fields(string(bakedPub))
	if err := os.WriteFile(stale, []byte(fmt.Sprintf("%s %s %s\n", addr, fields[0], fields[1])), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = sshTo(stale)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "Host key verification failed") {
		t.Fatalf("ssh with the image's old key: %v: %s (want host key verification to fail)", err, out)
	}
	t.Logf("ssh -o StrictHostKeyChecking=yes: logged in as alice with the known-hosts output; the image's old key fails host key verification")
}
