package status

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// StepSSHHostKeys is the step that regenerates the SSH host keys
// (document field sshHostKeys.regenerate).
const StepSSHHostKeys = "sshHostKeys"

// Bounds of a report's sshHostKeys: a guest cannot make the IMDS keep
// megabytes. An RSA key of 16384 bits is about 2,800 characters of base64.
const (
	MaxHostKeys     = 16
	MaxHostKeyBytes = 8192
)

// HostKey is one SSH host public key of the guest, as a partial-ready or
// provisioned report carries it: enough for a tenant to verify the first
// connection instead of trusting it.
type HostKey struct {
	// Type is the key's algorithm name as in a known_hosts line
	// ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa").
	Type string `json:"type"`
	// Key is the base64 part of the public key line (the wire encoding of
	// the key, RFC 4253 section 6.6): known_hosts takes it verbatim.
	Key string `json:"key"`
	// Fingerprint is "SHA256:" and the unpadded base64 of the SHA-256 of
	// the key, exactly as `ssh-keygen -l` prints it.
	Fingerprint string `json:"fingerprint"`
}

// validKeyType reports whether t is an SSH key algorithm name: 1-64
// characters of [a-z0-9@.-], the first a letter or digit. A plain loop
// rather than a regexp compiled at start-up, which every binary importing
// this package would pay for in heap (issue 15).
func validKeyType(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '@' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ParseHostKey reads one public key line ("ssh-ed25519 AAAA... root@host",
// the format of ssh_host_*_key.pub); the comment is dropped.
func ParseHostKey(line string) (HostKey, error) {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return HostKey{}, fmt.Errorf("parse public key line: %w", err)
	}
	return HostKeyOf(pk), nil
}

// HostKeyOf returns the HostKey of a parsed public key.
func HostKeyOf(pk ssh.PublicKey) HostKey {
	return HostKey{
		Type:        pk.Type(),
		Key:         base64.StdEncoding.EncodeToString(pk.Marshal()),
		Fingerprint: ssh.FingerprintSHA256(pk),
	}
}

// KnownHostsLine returns the key's line for ~/.ssh/known_hosts naming
// hosts (host names or addresses; a non-default port as "[host]:port").
func (k HostKey) KnownHostsLine(hosts []string) string {
	return strings.Join(hosts, ",") + " " + k.Type + " " + k.Key
}

// check returns why k is not a consistent host key, or "" : the key must
// decode, be of its stated type and have its stated fingerprint, so a
// tenant never gets a fingerprint that does not match the key.
func (k HostKey) check() (field, reason string) {
	if !validKeyType(k.Type) {
		return "type", "must be an SSH key algorithm name such as ssh-ed25519 (1-64 characters of [a-z0-9@.-])"
	}
	if k.Key == "" {
		return "key", "required"
	}
	if len(k.Key) > MaxHostKeyBytes {
		return "key", fmt.Sprintf("must be at most %d bytes (is %d)", MaxHostKeyBytes, len(k.Key))
	}
	raw, err := base64.StdEncoding.DecodeString(k.Key)
	if err != nil {
		return "key", "must be the base64 part of a public key line: " + err.Error()
	}
	pk, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return "key", "must be an SSH public key: " + err.Error()
	}
	if base64.StdEncoding.EncodeToString(pk.Marshal()) != k.Key {
		// Trailing bits or bytes the key does not use: one key, one text.
		return "key", "must be the key's canonical base64 encoding"
	}
	if pk.Type() != k.Type {
		return "type", fmt.Sprintf("must be the key's own type %q", pk.Type())
	}
	if fp := ssh.FingerprintSHA256(pk); k.Fingerprint != fp {
		return "fingerprint", "must be the key's SHA256 fingerprint as ssh-keygen -l prints it (SHA256:...)"
	}
	return "", ""
}

// checkHostKeys adds a field error for each rule keys break.
func checkHostKeys(keys []HostKey, state string, fail func(path, reason string)) {
	if len(keys) == 0 {
		return
	}
	if state != StatePartialReady && state != StateProvisioned {
		fail("sshHostKeys", "only a partial-ready or provisioned report carries host keys")
	}
	if len(keys) > MaxHostKeys {
		fail("sshHostKeys", fmt.Sprintf("must list at most %d keys (lists %d)", MaxHostKeys, len(keys)))
		return
	}
	for i, k := range keys {
		if f, reason := k.check(); reason != "" {
			fail(fmt.Sprintf("sshHostKeys[%d].%s", i, f), reason)
		}
	}
}
