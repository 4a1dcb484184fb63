package platform

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/internal/sshtest"
	"github.com/prewarm/prewarm/shared/status"
)

// writeHostKey writes a new ed25519 host key pair as dir\ssh_host_NAME_key
// (the private file is a stand-in: only its presence counts) and returns
// the public key's HostKey.
func writeHostKey(t *testing.T, dir, name string) status.HostKey {
	t.Helper()
	pk := sshtest.NewKey()
	f := filepath.Join(dir, "ssh_host_"+name+"_key")
	if err := os.WriteFile(f, []byte("private\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f+".pub", ssh.MarshalAuthorizedKey(pk), 0o644); err != nil {
		t.Fatal(err)
	}
	return status.HostKeyOf(pk)
}

// keygenFake stands in for ssh-keygen -A: it records the call and writes
// a new ed25519 key pair.
type keygenFake struct {
	t    *testing.T
	dir  string
	cmds []run.Cmd
	made status.HostKey
}

func (k *keygenFake) Run(_ context.Context, c run.Cmd) ([]byte, error) {
	k.cmds = append(k.cmds, c)
	k.made = writeHostKey(k.t, k.dir, "ed25519")
	return nil, nil
}

func (k *keygenFake) Look(name string) (string, error) { return `C:\fake\` + name, nil }

func TestWindowsHostKeys(t *testing.T) {
	dir := tempDir(t)
	m := &hostKeyManager{dir: dir, live: true, log: testLogger(t)}
	keys, err := m.HostKeys(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("empty dir: %v, %v", keys, err)
	}
	ed := writeHostKey(t, dir, "ed25519")
	ec := writeHostKey(t, dir, "ecdsa")
	if err := os.Remove(filepath.Join(dir, "ssh_host_ecdsa_key")); err != nil {
		t.Fatal(err)
	}
	keys, err = m.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != ed {
		t.Errorf("HostKeys = %+v, want only %+v (the ecdsa key %s has no private key)", keys, ed, ec.Fingerprint)
	}
}

func TestWindowsRegenerateHostKeys(t *testing.T) {
	dir := tempDir(t)
	old := writeHostKey(t, dir, "ed25519")
	writeHostKey(t, dir, "dsa")
	k := &keygenFake{t: t, dir: dir}
	restarted := 0
	m := &hostKeyManager{dir: dir, live: true, runner: k, log: testLogger(t),
		restart: func(context.Context) (string, error) { restarted++; return "restarted service sshd", nil }}
	res, err := m.RegenerateHostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(k.cmds) != 1 || k.cmds[0].Name != "ssh-keygen" || !slices.Equal(k.cmds[0].Args, []string{"-A"}) {
		t.Errorf("commands %v, want ssh-keygen -A", k.cmds)
	}
	if restarted != 1 || !res.Changed || !slices.Contains(res.Actions, "restarted service sshd") {
		t.Errorf("restarted %d times, result %+v", restarted, res)
	}
	keys, err := m.HostKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != k.made || keys[0] == old {
		t.Errorf("after: %+v, want only the new %+v", keys, k.made)
	}
	if _, err := os.Stat(filepath.Join(dir, "ssh_host_dsa_key.pub")); !os.IsNotExist(err) {
		t.Errorf("the old DSA key is still there: %v", err)
	}

	m.live = false
	if _, err := m.RegenerateHostKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "target root") {
		t.Errorf("under a target root: %v", err)
	}
	m = &hostKeyManager{dir: filepath.Join(dir, "absent"), live: true, runner: k, log: testLogger(t)}
	if _, err := m.RegenerateHostKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "OpenSSH server installed") {
		t.Errorf("without %%ProgramData%%\\ssh: %v", err)
	}
}
