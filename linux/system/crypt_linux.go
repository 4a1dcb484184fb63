package system

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
)

// SHA-512 crypt ("$6$"), as glibc's crypt(3) implements it, so a plaintext
// password is hashed here and reaches chpasswd only as a hash, on stdin.

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sha512Crypt hashes pw with salt; rounds 0 means the default 5000 (and no
// rounds= field in the result).
func sha512Crypt(pw, salt string, rounds int) string {
	custom := rounds != 0
	if rounds == 0 {
		rounds = 5000
	}
	rounds = min(max(rounds, 1000), 999999999)
	if len(salt) > 16 {
		salt = salt[:16]
	}
	p, s := []byte(pw), []byte(salt)

	h := sha512.New()
	h.Write(p)
	h.Write(s)
	h.Write(p)
	b := h.Sum(nil)

	h.Reset()
	h.Write(p)
	h.Write(s)
	i := len(p)
	for ; i > 64; i -= 64 {
		h.Write(b)
	}
	h.Write(b[:i])
	for i = len(p); i > 0; i >>= 1 {
		if i&1 != 0 {
			h.Write(b)
		} else {
			h.Write(p)
		}
	}
	a := h.Sum(nil)

	h.Reset()
	for range len(p) {
		h.Write(p)
	}
	dp := h.Sum(nil)
	pSeq := make([]byte, 0, len(p))
	for len(pSeq) < len(p) {
		pSeq = append(pSeq, dp[:min(64, len(p)-len(pSeq))]...)
	}

	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(s)
	}
	ds := h.Sum(nil)
	sSeq := ds[:len(s)]

	c := a
	for r := 0; r < rounds; r++ {
		h.Reset()
		if r&1 != 0 {
			h.Write(pSeq)
		} else {
			h.Write(c)
		}
		if r%3 != 0 {
			h.Write(sSeq)
		}
		if r%7 != 0 {
			h.Write(pSeq)
		}
		if r&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pSeq)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString("$6$")
	if custom {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.WriteString(salt)
	out.WriteByte('$')
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for range n {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	for i := 0; i < 21; i++ {
		x, y, z := c[i], c[i+21], c[i+42]
		switch i % 3 {
		case 0:
			enc(x, y, z, 4)
		case 1:
			enc(y, z, x, 4)
		case 2:
			enc(z, x, y, 4)
		}
	}
	enc(0, 0, c[63], 2)
	return out.String()
}

// hashPassword hashes pw with a random 16-character salt.
func hashPassword(pw string) (string, error) {
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	salt := make([]byte, 16)
	for i, r := range raw {
		salt[i] = cryptAlphabet[int(r)%len(cryptAlphabet)]
	}
	return sha512Crypt(pw, string(salt), 0), nil
}

var errNotSHA512 = errors.New("not a $6$ hash")

// matchSHA512 reports whether hash is pw's $6$ hash.
func matchSHA512(pw, hash string) (bool, error) {
	rest, ok := strings.CutPrefix(hash, "$6$")
	if !ok {
		return false, errNotSHA512
	}
	rounds := 0
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, after, ok := strings.Cut(r, "$")
		if !ok {
			return false, errNotSHA512
		}
		rounds, _ = strconv.Atoi(n)
		rest = after
	}
	salt, _, ok := strings.Cut(rest, "$")
	if !ok {
		return false, errNotSHA512
	}
	got := sha512Crypt(pw, salt, rounds)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1, nil
}
