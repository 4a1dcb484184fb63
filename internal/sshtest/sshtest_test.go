package sshtest

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestNewKey(t *testing.T) {
	a, b := NewKey(), NewKey()
	if a.Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("type %q, want %q", a.Type(), ssh.KeyAlgoED25519)
	}
	if bytes.Equal(a.Marshal(), b.Marshal()) {
		t.Fatal("two keys alike; want fresh ones")
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(ssh.MarshalAuthorizedKey(a)); err != nil {
		t.Fatalf("the key's authorized_keys line does not parse: %v", err)
	}
}
