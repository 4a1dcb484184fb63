package system

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent/run"
)

// keygenRunner runs ssh-keygen for real and records systemctl without
// running it, failing the units listed in failUnits.
type keygenRunner struct {
	real      run.Exec
	mu        sync.Mutex
	systemctl [][]string
	failUnits []string
}

func (k *keygenRunner) Run(ctx context.Context, c run.Cmd) ([]byte, error) {
	if c.Name == "systemctl" {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.systemctl = append(k.systemctl, c.Args)
		if slices.Contains(k.failUnits, c.Args[len(c.Args)-1]) {
			return nil, &run.ExitError{Cmd: c.String(), Code: 5, Stderr: "Unit " + c.Args[len(c.Args)-1] + " not found.", Err: errors.New("exit status 5")}
		}
		return nil, nil
	}
	return k.real.Run(ctx, c)
}

func (k *keygenRunner) Look(name string) (string, error) {
	if name == "systemctl" {
		return "/fake/systemctl", nil
	}
	return k.real.Look(name)
}

func needKeygen(t *testing.T) string {
	t.Helper()
	p, err := (&run.Exec{}).Look("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	return p
}

// keygen makes a host key of typ in root's /etc/ssh the way an image
// build does.
func keygen(t *testing.T, root, typ string) {
	t.Helper()
	args := []string{"-q", "-t", typ, "-N", "", "-C", "root@baked", "-f", filepath.Join(root, "etc/ssh", hostKeyFile(typ))}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	if out, err := exec.Command(needKeygen(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
}

// fingerprint is what `ssh-keygen -l` says of a public key file.
func fingerprint(t *testing.T, pub string) string {
	t.Helper()
	out, err := exec.Command(needKeygen(t), "-l", "-f", pub).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l -f %s: %v", pub, err)
	}
	return strings.Fields(string(out))[1]
}

func hostKeyRoot(t *testing.T) string {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestHostKeysListed(t *testing.T) {
	needKeygen(t)
	root := hostKeyRoot(t)
	s := New(Options{Root: root, Runner: &keygenRunner{}, Logger: testLogger(t)})
	keys, err := s.HostKeys(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("no keys: got %v, %v", keys, err)
	}
	keygen(t, root, "ed25519")
	keygen(t, root, "rsa")
	// A public key without its private key is not served by sshd.
	if err := os.WriteFile(filepath.Join(root, "etc/ssh/ssh_host_dsa_key.pub"), []byte("ssh-dss AAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err = s.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.Type+" "+k.Fingerprint)
	}
	want := []string{
		"ssh-ed25519 " + fingerprint(t, filepath.Join(root, "etc/ssh/ssh_host_ed25519_key.pub")),
		"ssh-rsa " + fingerprint(t, filepath.Join(root, "etc/ssh/ssh_host_rsa_key.pub")),
	}
	if !slices.Equal(got, want) {
		t.Errorf("HostKeys = %q\nssh-keygen -l: %q", got, want)
	}

	// A damaged key file is an error naming it.
	if err := os.WriteFile(filepath.Join(root, "etc/ssh/ssh_host_rsa_key.pub"), []byte("ssh-rsa !!!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HostKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "ssh_host_rsa_key.pub") {
		t.Errorf("damaged key: %v", err)
	}

	// No /etc/ssh at all: no keys, no error.
	s = New(Options{Root: t.TempDir(), Runner: &keygenRunner{}, Logger: testLogger(t)})
	if keys, err := s.HostKeys(context.Background()); err != nil || len(keys) != 0 {
		t.Errorf("no /etc/ssh: %v, %v", keys, err)
	}
}

// TestRegenerateHostKeys regenerates a baked image's keys with the real
// ssh-keygen: the same types, new keys, each private key matching its
// public one and readable by its owner only, the DSA key gone, no
// temporary file left, and HostKeys reporting the new fingerprints.
func TestRegenerateHostKeys(t *testing.T) {
	keygenPath := needKeygen(t)
	root := hostKeyRoot(t)
	keygen(t, root, "ed25519")
	keygen(t, root, "ecdsa")
	keygen(t, root, "dsa")
	s := New(Options{Root: root, Runner: &keygenRunner{}, Logger: testLogger(t)})
	before, err := s.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RegenerateHostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Error("regeneration reports no change")
	}
	after, err := s.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, k := range after {
		types = append(types, k.Type)
		for _, b := range before {
			if b.Key == k.Key {
				t.Errorf("key %s survived the regeneration", k.Fingerprint)
			}
		}
	}
	if want := []string{"ecdsa-sha2-nistp256", "ssh-ed25519"}; !slices.Equal(types, want) {
		t.Errorf("types after = %v, want %v (the image's, without DSA)", types, want)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "etc/ssh"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}
	if !slices.Equal(names, want) {
		t.Errorf("/etc/ssh holds %v, want %v", names, want)
	}
	for _, typ := range []string{"ecdsa", "ed25519"} {
		priv := filepath.Join(root, "etc/ssh", hostKeyFile(typ))
		st, err := os.Stat(priv)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", priv, st.Mode().Perm())
		}
		derived, err := exec.Command(keygenPath, "-y", "-f", priv).Output()
		if err != nil {
			t.Fatalf("ssh-keygen -y: %v", err)
		}
		pub, err := os.ReadFile(priv + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Fields(string(derived))[1] != strings.Fields(string(pub))[1] {
			t.Errorf("%s does not match its .pub", priv)
		}
	}
	for i, k := range after {
		pub := filepath.Join(root, "etc/ssh", []string{"ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key.pub"}[i])
		if fp := fingerprint(t, pub); k.Fingerprint != fp {
			t.Errorf("reported %s, ssh-keygen -l says %s", k.Fingerprint, fp)
		}
	}
}

func TestRegenerateHostKeysEmptyImage(t *testing.T) {
	needKeygen(t)
	root := hostKeyRoot(t)
	s := New(Options{Root: root, Runner: &keygenRunner{}, Logger: testLogger(t)})
	if _, err := s.RegenerateHostKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	keys, err := s.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, k := range keys {
		types = append(types, k.Type)
	}
	if want := []string{"ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"}; !slices.Equal(types, want) {
		t.Errorf("types = %v, want %v (ssh-keygen -A's)", types, want)
	}

	s = New(Options{Root: t.TempDir(), Runner: &keygenRunner{}, Logger: testLogger(t)})
	if _, err := s.RegenerateHostKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "/etc/ssh") {
		t.Errorf("no /etc/ssh: %v", err)
	}
}

// hkProc makes a /proc with PID 1 running pid1 and a process 4321
// running comm.
func hkProc(t *testing.T, pid1, comm string) string {
	proc := t.TempDir()
	for pid, c := range map[string]string{"1": pid1, "4321": comm} {
		must(t, os.MkdirAll(filepath.Join(proc, pid), 0o755))
		must(t, os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(c+"\n"), 0o644))
	}
	return proc
}

// TestRegenerateReloadsSSHD: under systemd a running sshd is reloaded
// through its unit (ssh.service when sshd.service does not exist);
// without systemd the pid of /run/sshd.pid gets SIGHUP (a real process
// here, which SIGHUP ends); with no sshd running nothing is reloaded.
func TestRegenerateReloadsSSHD(t *testing.T) {
	needKeygen(t)
	t.Run("systemd", func(t *testing.T) {
		root := hostKeyRoot(t)
		r := &keygenRunner{failUnits: []string{"sshd.service"}}
		s := New(Options{Root: root, Runner: r, Logger: testLogger(t), Live: true, ProcDir: hkProc(t, "systemd", "sshd")})
		res, err := s.RegenerateHostKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := [][]string{{"reload", "sshd.service"}, {"reload", "ssh.service"}}
		if !slices.EqualFunc(r.systemctl, want, slices.Equal) {
			t.Errorf("systemctl calls %v, want %v", r.systemctl, want)
		}
		if !slices.Contains(res.Actions, "reloaded ssh.service") {
			t.Errorf("actions %v", res.Actions)
		}
		r.failUnits = []string{"sshd.service", "ssh.service"}
		if _, err := s.RegenerateHostKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "reload sshd") {
			t.Errorf("no unit reloads: %v", err)
		}
	})
	t.Run("not running", func(t *testing.T) {
		r := &keygenRunner{}
		s := New(Options{Root: hostKeyRoot(t), Runner: r, Logger: testLogger(t), Live: true, ProcDir: hkProc(t, "systemd", "cron")})
		if _, err := s.RegenerateHostKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(r.systemctl) != 0 {
			t.Errorf("reloaded an sshd that does not run: %v", r.systemctl)
		}
	})
	t.Run("SIGHUP", func(t *testing.T) {
		root := hostKeyRoot(t)
		sleeper := exec.Command("sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sleeper.Wait() }()
		t.Cleanup(func() {
			sleeper.Process.Kill()
			<-done
		})
		must(t, os.MkdirAll(filepath.Join(root, "run"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "run/sshd.pid"), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644))
		s := New(Options{Root: root, Runner: &keygenRunner{}, Logger: testLogger(t), Live: true, ProcDir: hkProc(t, "init", "sshd")})
		if _, err := s.RegenerateHostKeys(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
				t.Errorf("the sshd stand-in ended with %v, not SIGHUP", err)
			}
			done <- err // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatal("the sshd stand-in got no SIGHUP")
		}
	})
}
