package config

import "strings"

// The syntax rules of host-name labels, user names, zone names, shells and
// crypt(3) strings, written out instead of compiled regular expressions:
// the bounded repetitions ({0,61}, {0,254}, {1,86}, {43}) compiled at init
// cost every program linking this package ~0.4 MB of heap for good
// (GODEBUG=inittrace=1; the IMDS's idle RSS, BENCHMARKS.md issue 15).
// rules_test.go checks each against its regular expression.

// isLower, isDigit: ASCII classes.
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isCryptChar is crypt(3)'s base-64 alphabet: [./0-9A-Za-z].
func isCryptChar(c byte) bool {
	return c == '.' || c == '/' || isDigit(c) || isLower(c) || c >= 'A' && c <= 'Z'
}

// validLabel is ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := range len(l) {
		if c := l[i]; !isLower(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// validUserName is ^[a-z_][a-z0-9_-]{0,31}$.
func validUserName(name string) bool {
	if len(name) == 0 || len(name) > 32 || !isLower(name[0]) && name[0] != '_' {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isLower(c) && !isDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validZoneSyntax is ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$.
func validZoneSyntax(zone string) bool {
	for part := range strings.SplitSeq(zone, "/") {
		if part == "" {
			return false
		}
		for i := range len(part) {
			c := part[i]
			if !isLower(c) && !(c >= 'A' && c <= 'Z') && !isDigit(c) && c != '_' && c != '+' && c != '-' {
				return false
			}
		}
	}
	return true
}

// validShellSyntax is ^/[^\s:\x00-\x1f\x7f]{0,254}$: at most 254
// characters after the slash, counted as the regexp package counts them
// (a rune, or one byte of invalid UTF-8).
func validShellSyntax(shell string) bool {
	if !strings.HasPrefix(shell, "/") {
		return false
	}
	n := 0
	for _, r := range shell[1:] {
		if r == ' ' || r == ':' || r < 0x20 || r == 0x7f {
			return false
		}
		n++
	}
	return n <= 254
}

// cryptRun is the length of the run of crypt(3) characters at the start
// of s.
func cryptRun(s string) int {
	i := 0
	for i < len(s) && isCryptChar(s[i]) {
		i++
	}
	return i
}

// validCrypt accepts SHA-512 ($6$, 86 characters of hash) and SHA-256
// ($5$, 43) crypt strings with an optional rounds= parameter and a salt of
// up to 16 characters, and yescrypt ($y$ parameters $ salt of up to 86 $
// 43): ^\$(5|6)\$(rounds=[0-9]{1,9}\$)?[./0-9A-Za-z]{1,16}\$([./0-9A-Za-z]+)$
// with the hash's length checked, or
// ^\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{1,86}\$[./0-9A-Za-z]{43}$.
func validCrypt(h string) bool {
	switch {
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		want := 86
		if h[1] == '5' {
			want = 43
		}
		rest := h[3:]
		if r, ok := strings.CutPrefix(rest, "rounds="); ok {
			i := 0
			for i < len(r) && isDigit(r[i]) {
				i++
			}
			if i == 0 || i > 9 || i == len(r) || r[i] != '$' {
				return false
			}
			rest = r[i+1:]
		}
		salt := cryptRun(rest)
		if salt == 0 || salt > 16 || salt == len(rest) || rest[salt] != '$' {
			return false
		}
		hash := rest[salt+1:]
		return len(hash) == want && cryptRun(hash) == want
	case strings.HasPrefix(h, "$y$"):
		parts := strings.Split(h[3:], "$")
		if len(parts) != 3 {
			return false
		}
		for i, bounds := range [3][2]int{{1, len(h)}, {1, 86}, {43, 43}} {
			p := parts[i]
			if len(p) < bounds[0] || len(p) > bounds[1] || cryptRun(p) != len(p) {
				return false
			}
		}
		return true
	}
	return false
}
