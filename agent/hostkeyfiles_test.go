package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadHostKeys(t *testing.T) {
	const ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFt59H2uerpat1r7vxyjf58aCWgx/+2NGHPv+8t+YJR root@web-1"
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	keys, err := ReadHostKeys(filepath.Join(dir, "missing"))
	if err != nil || len(keys) != 0 {
		t.Fatalf("missing dir: %v, %v; want no keys, no error", keys, err)
	}

	write("ssh_host_ed25519_key", "private")
	write("ssh_host_ed25519_key.pub", ed+"\n")
	// sshd serves no key whose private half is gone.
	write("ssh_host_rsa_key.pub", "ssh-rsa AAAA orphan\n")
	keys, err = ReadHostKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Type != "ssh-ed25519" || !strings.HasPrefix(ed, keys[0].Type+" "+keys[0].Key) {
		t.Fatalf("keys = %+v, want the ed25519 key only", keys)
	}

	write("ssh_host_ecdsa_key", "private")
	write("ssh_host_ecdsa_key.pub", "not a key\n")
	if _, err := ReadHostKeys(dir); err == nil || !strings.Contains(err.Error(), "ssh_host_ecdsa_key.pub") {
		t.Fatalf("bad key: err = %v, want one naming ssh_host_ecdsa_key.pub", err)
	}
}
