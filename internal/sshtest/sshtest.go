// Package sshtest makes the SSH keys tests need.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"

	"golang.org/x/crypto/ssh"
)

// NewKey returns a fresh ed25519 public key. Neither step can fail (Go's
// crypto/rand does not return errors; an ed25519 key always converts): it
// panics if one does, so a fake may call it outside the test's goroutine.
func NewKey() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
}
