package status

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestHostKeyFingerprintIsSSHKeygens generates real keys with ssh-keygen
// and checks that ParseHostKey's fingerprint is the one `ssh-keygen -l`
// prints, for every key type a host has.
func TestHostKeyFingerprintIsSSHKeygens(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	dir := t.TempDir()
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			f := filepath.Join(dir, "ssh_host_"+typ+"_key")
			args := []string{"-q", "-t", typ, "-N", "", "-C", "root@test", "-f", f}
			if typ == "rsa" {
				args = append(args, "-b", "2048")
			}
			if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v: %s", err, out)
			}
			out, err := exec.Command(keygen, "-l", "-E", "sha256", "-f", f+".pub").Output()
			if err != nil {
				t.Fatalf("ssh-keygen -l: %v", err)
			}
			// "256 SHA256:... root@test (ED25519)"
			want := strings.Fields(string(out))[1]
			pub, err := os.ReadFile(f + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParseHostKey(string(pub))
			if err != nil {
				t.Fatal(err)
			}
			if k.Fingerprint != want {
				t.Errorf("fingerprint %q, ssh-keygen -l says %q", k.Fingerprint, want)
			}
			fields := strings.Fields(string(pub))
			if k.Type != fields[0] || k.Key != fields[1] {
				t.Errorf("type/key %q %q, the .pub line has %q %q", k.Type, k.Key, fields[0], fields[1])
			}
			if f, reason := k.check(); reason != "" {
				t.Errorf("a real key fails validation: %s: %s", f, reason)
			}
			// ssh-keygen -F finds the known_hosts line under its host name.
			kh := filepath.Join(dir, typ+"_known_hosts")
			if err := os.WriteFile(kh, []byte(k.KnownHostsLine([]string{"web-1", "10.0.0.5"})+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"web-1", "10.0.0.5"} {
				out, err := exec.Command(keygen, "-F", h, "-f", kh).CombinedOutput()
				if err != nil || !strings.Contains(string(out), k.Key) {
					t.Errorf("ssh-keygen -F %s in the known_hosts line: %v: %s", h, err, out)
				}
			}
		})
	}
}

const (
	edLine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFt59H2uerpat1r7vxyjf58aCWgx/+2NGHPv+8t+YJR root@web-1"
	// edFP is `ssh-keygen -lf` of edLine.
	edFP = "SHA256:qQEsbgRoiKxbXvtBzmSlxaNGP/jpWwjLxvUTnKGlvSk"
)

func TestReportHostKeysValidation(t *testing.T) {
	good, err := ParseHostKey(edLine)
	if err != nil {
		t.Fatal(err)
	}
	if good.Fingerprint != edFP {
		t.Fatalf("fingerprint %s, want %s", good.Fingerprint, edFP)
	}
	base := Report{Seq: 1, Time: Time{time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)}, Generation: 2, State: StateProvisioned}
	many := make([]HostKey, MaxHostKeys+1)
	for i := range many {
		many[i] = good
	}
	tests := []struct {
		name  string
		state string
		keys  []HostKey
		path  string // "" = valid
	}{
		{"one good key", StateProvisioned, []HostKey{good}, ""},
		{"partial-ready", StatePartialReady, []HostKey{good}, ""},
		{"none", StateFailed, nil, ""},
		{"not on applying", StateApplying, []HostKey{good}, "sshHostKeys"},
		{"too many", StateProvisioned, many, "sshHostKeys"},
		{"bad type", StateProvisioned, []HostKey{{Type: "SSH ED25519\x1b[2J", Key: good.Key, Fingerprint: good.Fingerprint}}, "sshHostKeys[0].type"},
		{"type not the key's", StateProvisioned, []HostKey{{Type: "ssh-rsa", Key: good.Key, Fingerprint: good.Fingerprint}}, "sshHostKeys[0].type"},
		{"no key", StateProvisioned, []HostKey{{Type: good.Type, Fingerprint: good.Fingerprint}}, "sshHostKeys[0].key"},
		{"not base64", StateProvisioned, []HostKey{{Type: good.Type, Key: "%%%", Fingerprint: good.Fingerprint}}, "sshHostKeys[0].key"},
		{"not a key", StateProvisioned, []HostKey{{Type: good.Type, Key: "aGVsbG8=", Fingerprint: good.Fingerprint}}, "sshHostKeys[0].key"},
		{"huge key", StateProvisioned, []HostKey{{Type: good.Type, Key: strings.Repeat("A", MaxHostKeyBytes+4), Fingerprint: good.Fingerprint}}, "sshHostKeys[0].key"},
		// Go's base64 skips line breaks: a key that decodes to the same
		// bytes must still be one known_hosts line.
		{"line break in the key", StateProvisioned, []HostKey{{Type: good.Type, Key: good.Key[:20] + "\n" + good.Key[20:], Fingerprint: good.Fingerprint}}, "sshHostKeys[0].key"},
		{"wrong fingerprint", StateProvisioned, []HostKey{{Type: good.Type, Key: good.Key, Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, "sshHostKeys[0].fingerprint"},
		{"MD5 fingerprint", StateProvisioned, []HostKey{{Type: good.Type, Key: good.Key, Fingerprint: "MD5:00:11"}}, "sshHostKeys[0].fingerprint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			r.State, r.SSHHostKeys = tc.state, tc.keys
			err := r.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("valid report refused: %v", err)
				}
				return
			}
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("want a *ValidationError naming %s, got %v", tc.path, err)
			}
			var paths []string
			for _, f := range ve.Fields {
				paths = append(paths, f.Path)
			}
			if len(paths) != 1 || paths[0] != tc.path {
				t.Errorf("fields %v, want [%s]", paths, tc.path)
			}
		})
	}
}

func TestParseHostKeyRefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "ssh-ed25519", "ssh-ed25519 !!!", "hello world"} {
		if _, err := ParseHostKey(s); err == nil {
			t.Errorf("ParseHostKey(%q) accepted", s)
		}
	}
}

// FuzzHostKeyCheck feeds arbitrary host keys to the IMDS's check: it never
// panics, and a key it accepts makes a known_hosts line that OpenSSH's
// parser (x/crypto/ssh) reads back as the same key under the same host.
func FuzzHostKeyCheck(f *testing.F) {
	good, _ := ParseHostKey(edLine)
	f.Add(good.Type, good.Key, good.Fingerprint)
	f.Add("ssh-rsa", good.Key, good.Fingerprint)
	f.Add("", "", "")
	f.Add("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIA==", "SHA256:")
	f.Add(good.Type, good.Key[:20]+"\r\n"+good.Key[20:], good.Fingerprint)
	f.Fuzz(func(t *testing.T, typ, key, fp string) {
		k := HostKey{Type: typ, Key: key, Fingerprint: fp}
		if _, reason := k.check(); reason != "" {
			return
		}
		_, hosts, pk, _, _, err := ssh.ParseKnownHosts([]byte(k.KnownHostsLine([]string{"web-1", "10.0.0.5"})))
		if err != nil {
			t.Fatalf("accepted key %+v makes a known_hosts line that does not parse: %v", k, err)
		}
		if len(hosts) != 2 || HostKeyOf(pk) != k {
			t.Fatalf("accepted key %+v reads back as %v %+v", k, hosts, HostKeyOf(pk))
		}
	})
}
