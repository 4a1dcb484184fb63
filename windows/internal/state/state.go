package state

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/scrypt"

	"github.com/prewarm/prewarm/agent/atomicfile"
)

// Load reads the JSON record at path into v. A missing file leaves v as it
// is: no record yet.
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse state %s: %w", path, err)
	}
	return nil
}

// Save writes v as JSON to path atomically.
func Save(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state %s: %w", path, err)
	}
	return atomicfile.Write(path, append(b, '\n'), atomicfile.Options{Mode: 0o600})
}

// scrypt parameters of a verifier: the recommended interactive cost.
const (
	scryptN, scryptR, scryptP, keyLen = 1 << 15, 8, 1, 32
	verifierPrefix                    = "scrypt1$"
)

// NewVerifier returns a salted scrypt verifier of pw, never pw itself.
func NewVerifier(pw []byte) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	k, err := scrypt.Key(pw, salt, scryptN, scryptR, scryptP, keyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return verifierPrefix + enc.EncodeToString(salt) + "$" + enc.EncodeToString(k), nil
}

// Matches reports whether pw is the password verifier v was made from. A
// malformed verifier matches nothing (the password is then set again).
func Matches(v string, pw []byte) bool {
	rest, ok := strings.CutPrefix(v, verifierPrefix)
	if !ok {
		return false
	}
	s, k, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(s)
	want, err2 := enc.DecodeString(k)
	if err1 != nil || err2 != nil || len(want) != keyLen {
		return false
	}
	got, err := scrypt.Key(pw, salt, scryptN, scryptR, scryptP, keyLen)
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}
