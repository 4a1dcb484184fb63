package plan

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRandomPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw, err := RandomPassword(nil, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) < 20 || len(pw) != RandomPasswordLen {
			t.Fatalf("length %d; want %d (at least 20)", len(pw), RandomPasswordLen)
		}
		if !hasEveryClass(pw) {
			t.Fatalf("%q lacks a character class", pw)
		}
		if bytes.ContainsAny(pw, " \"'`\\\t") {
			t.Fatalf("%q has a quote, space or backslash", pw)
		}
		if seen[string(pw)] {
			t.Fatalf("%q drawn twice", pw)
		}
		seen[string(pw)] = true
	}
}

// cycle is a random source that returns its bytes over and over.
type cycle struct {
	b []byte
	i int
}

func (r *cycle) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b[r.i%len(r.b)]
		r.i++
	}
	return len(p), nil
}

func repeat(b ...byte) *cycle { return &cycle{b: b} }

func TestRandomPasswordBrokenSource(t *testing.T) {
	// All zeros: always 'a', never every class; the loop is bounded.
	if _, err := RandomPassword(repeat(0), "bob"); err == nil {
		t.Error("a source of zeros gave a password")
	}
	if _, err := RandomPassword(strings.NewReader("short"), "bob"); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("a short source: %v; want its EOF", err)
	}
	// Bytes past the largest multiple of the alphabet are drawn again.
	if _, err := uniform(repeat(255), 86, make([]byte, 1)); err == nil {
		t.Error("uniform accepted only out-of-range bytes")
	}
}

func TestRandomPasswordAvoidsTheName(t *testing.T) {
	// The same 24 bytes every draw: "abcA0~" and filler, every class,
	// holding the name "abc" and not "zzz".
	src := []byte{0, 1, 2, 26, 52, 62, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10}
	if _, err := RandomPassword(repeat(src...), "abc"); err == nil {
		t.Error("a password holding the user name was returned")
	}
	if _, err := RandomPassword(repeat(src...), "zzz"); err != nil {
		t.Errorf("name not in the password: %v", err)
	}
}

func TestRandomPasswordNameCheckCopiesNothing(t *testing.T) {
	// Upper case in the password: a lowered copy (strings.ToLower of a
	// string(pw)) would be an allocation nobody zeroes. The only ones
	// allowed are the returned buffer and the one-byte draw buffer.
	src := []byte{26, 27, 28, 0, 52, 62, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47}
	rnd := repeat(src...)
	allocs := testing.AllocsPerRun(20, func() {
		rnd.i = 0
		pw, err := RandomPassword(rnd, "zzzz")
		if err != nil {
			t.Fatal(err)
		}
		clear(pw)
	})
	if allocs != 2 {
		t.Errorf("RandomPassword made %v allocations; want 2 (the password and the draw buffer)", allocs)
	}
	for _, tc := range []struct {
		pw, name string
		want     bool
	}{
		{"xxABCxx", "abc", true},
		{"xxAbCxx", "abc", true},
		{"xxabxcx", "abc", false},
		{"ab", "abc", false},
		{"ABC", "abc", true},
		{"xx\u00c9", "\u00e9", false},
	} {
		if got := containsFoldASCII([]byte(tc.pw), tc.name); got != tc.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v; want %v", tc.pw, tc.name, got, tc.want)
		}
	}
}
