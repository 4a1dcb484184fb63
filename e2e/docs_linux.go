package e2e

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/prewarm/prewarm/internal/sshtest"
)

// Doc is a config document as a publisher writes it.
type Doc = map[string]any

// SSHKey returns a fresh OpenSSH public key line with the given comment.
func SSHKey(_ testing.TB, comment string) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshtest.NewKey()))) + " " + comment
}

// TestPasswordHash is a SHA-512 crypt(3) string of "prewarm-e2e".
const TestPasswordHash = "$6$e2esalt$jfjqPlNQzT3IH2hG2fGmEl5IVqdlTQ3d5EXjwpr.JYercCNmcK61.nsA0pf5j/Sizs1raJQHs/vNiN1pz06o3/"

// TestPassword is a plaintext password that must never appear in a log,
// a report or a read-back.
const TestPassword = "e2e-Plaintext-Secret-4711"
