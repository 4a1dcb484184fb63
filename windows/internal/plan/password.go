package plan

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
)

// RandomPasswordLen is the length of the password of a key-only user: more
// than Google's guest agent's 15-character minimum and than any length a
// local password policy sets by default (Windows Server: at most 14
// required), 24 characters of 86 give about 154 bits.
const RandomPasswordLen = 24

// The four character classes of Windows' complexity rule ("passwords must
// meet complexity requirements": three of the four). Every random password
// holds all four. No quotes, spaces or backslashes: nothing a command line
// could misread should an operator ever have to type one (they never see
// one: it is neither logged nor stored).
const (
	pwLower   = "abcdefghijklmnopqrstuvwxyz"
	pwUpper   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	pwDigits  = "0123456789"
	pwSpecial = "~!@#$%^&*_-+=|(){}[]:;<>,.?/"
)

// RandomPassword returns a password for a user the document gives SSH keys
// and no password: Windows' default policy refuses an account without one
// (NetUserAdd: NERR_PasswordTooShort). It has RandomPasswordLen characters
// drawn uniformly from rnd (crypto/rand when nil), with at least one of each
// class, and does not contain user (the policy refuses a password holding
// the account name). The caller sets it, zeroes it and forgets it: nobody
// ever logs on with it, and it never reaches a log, a report or the state.
func RandomPassword(rnd io.Reader, user string) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	all := pwLower + pwUpper + pwDigits + pwSpecial
	name := strings.ToLower(user)
	pw := make([]byte, RandomPasswordLen)
	// One byte drawn at a time into one scratch buffer (a fresh one per
	// draw escapes to the heap through io.Reader), zeroed on return.
	scratch := make([]byte, 1)
	defer clear(scratch)
	for range 100 {
		for i := range pw {
			c, err := uniform(rnd, len(all), scratch)
			if err != nil {
				clear(pw)
				return nil, fmt.Errorf("random password: %w", err)
			}
			pw[i] = all[c]
		}
		if hasEveryClass(pw) && (len(name) < 3 || !containsFoldASCII(pw, name)) {
			return pw, nil
		}
	}
	clear(pw)
	return nil, errors.New("random password: no password with every character class in 100 draws (is the random source broken?)")
}

// containsFoldASCII reports whether pw holds name, ASCII letters compared
// without case. It reads pw in place: no string or lowered copy of the
// password is made (one could not be zeroed). name is lower case; a name
// with a byte outside ASCII cannot occur in pw, which is ASCII.
func containsFoldASCII(pw []byte, name string) bool {
	for i := 0; i+len(name) <= len(pw); i++ {
		j := 0
		for ; j < len(name); j++ {
			c := pw[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != name[j] {
				break
			}
		}
		if j == len(name) {
			return true
		}
	}
	return false
}

// uniform returns a uniform integer in [0, n) from rnd, n <= 256: bytes at
// or above the largest multiple of n are drawn again (no modulo bias). b is
// the one-byte buffer it reads into.
func uniform(rnd io.Reader, n int, b []byte) (int, error) {
	limit := 256 - 256%n
	for range 1000 {
		if _, err := io.ReadFull(rnd, b[:1]); err != nil {
			return 0, err
		}
		if int(b[0]) < limit {
			return int(b[0]) % n, nil
		}
	}
	return 0, errors.New("random source returns only out-of-range bytes")
}

func hasEveryClass(pw []byte) bool {
	var l, u, d, s bool
	for _, c := range pw {
		switch {
		case strings.IndexByte(pwLower, c) >= 0:
			l = true
		case strings.IndexByte(pwUpper, c) >= 0:
			u = true
		case strings.IndexByte(pwDigits, c) >= 0:
			d = true
		case strings.IndexByte(pwSpecial, c) >= 0:
			s = true
		}
	}
	return l && u && d && s
}
