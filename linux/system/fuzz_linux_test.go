package system

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzWithKeyBlock: whatever the file held, the result is the file with
// its one block (or none) replaced by the keys, every line outside the
// block kept as it was and in order, and rewriting it again changes
// nothing; a file whose markers do not pair up into at most one block is
// refused, not rewritten.
func FuzzWithKeyBlock(f *testing.F) {
	f.Add("ssh-ed25519 AAAA me\n", "ssh-rsa BBBB x")
	f.Add(keysBegin+"\nold\n"+keysEnd+"\nmine\n", "")
	f.Add(keysEnd+"\n"+keysBegin+"\n", "k")
	// Issue 13: an unterminated block swallowed every line after it.
	f.Add("mine-1\n"+keysBegin+"\nold\nmine-2\nmine-3\n", "k")
	f.Add(keysBegin+"\r\nmine\r\n"+keysEnd+" \r\nmine-2\r\n", "k")
	f.Add(keysBegin+"\na\n"+keysEnd+"\n"+keysBegin+"\nb\n"+keysEnd+"\n", "k")
	f.Add(keysBegin+"\na\n"+keysEnd+"\nmine\n"+keysEnd+"\n", "")
	f.Fuzz(func(t *testing.T, old, key string) {
		if strings.ContainsAny(key, "\r\n") {
			return
		}
		var keys []string
		if strings.TrimSpace(key) != "" {
			keys = []string{key}
		}
		lines := strings.Split(strings.TrimSuffix(old, "\n"), "\n")
		if old == "" || old == "\n" {
			lines = nil
		}
		var begins, ends []int
		for i, l := range lines {
			switch strings.TrimRight(l, " \t\r") {
			case keysBegin:
				begins = append(begins, i)
			case keysEnd:
				ends = append(ends, i)
			}
		}
		paired := len(begins) == len(ends) && len(begins) <= 1 && (len(begins) == 0 || begins[0] < ends[0])
		once, err := withKeyBlock([]byte(old), keys)
		if !paired {
			if !errors.Is(err, ErrBrokenKeyBlock) || once != nil {
				t.Fatalf("markers at %v/%v not refused: %q, %v", begins, ends, once, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a file with paired markers: %v", err)
		}
		var want []string
		outside := lines
		if len(begins) == 1 {
			outside = append(slices.Clip(lines[:begins[0]]), lines[ends[0]+1:]...)
			want = append(want, lines[:begins[0]]...)
		} else {
			want = append(want, lines...)
		}
		if len(keys) > 0 {
			want = append(want, keysBegin, strings.TrimSpace(key), keysEnd)
		}
		if len(begins) == 1 {
			want = append(want, lines[ends[0]+1:]...)
		}
		if got := strings.Split(strings.TrimSuffix(string(once), "\n"), "\n"); len(once) > 0 && !slices.Equal(got, want) || len(once) == 0 && len(want) > 0 {
			t.Fatalf("lines outside the block %q not kept:\ngot  %q\nwant %q", outside, once, want)
		}
		twice, err := withKeyBlock(once, keys)
		if err != nil || string(once) != string(twice) {
			t.Fatalf("not idempotent:\n%q\n%q, %v", once, twice, err)
		}
	})
}

// FuzzHostsWith: the result has exactly one 127.0.1.1 line and rewriting
// it again changes nothing.
func FuzzHostsWith(f *testing.F) {
	f.Add("127.0.0.1 localhost\n127.0.1.1 a\n127.0.1.1 b\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, old string) {
		line := "127.0.1.1\tweb-01"
		once := hostsWith([]byte(old), line)
		if n := strings.Count(string(once), "\n127.0.1.1\t") + map[bool]int{true: 1}[strings.HasPrefix(string(once), "127.0.1.1\t")]; n < 1 {
			t.Fatalf("no 127.0.1.1 line in %q", once)
		}
		if twice := hostsWith(once, line); string(twice) != string(once) {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
	})
}
