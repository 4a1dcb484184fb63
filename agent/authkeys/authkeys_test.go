package authkeys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 alice@laptop"
	k2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ2 alice@desk"
)

func TestSet(t *testing.T) {
	tests := []struct {
		name, in   string
		keys       []string
		eol        string
		want       string
		wantChange bool
	}{
		{"new file", "", []string{k1}, "\n",
			"# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", true},
		{"new file CRLF", "", []string{k1}, "\r\n",
			"# BEGIN prewarm-agent keys for alice\r\n" + k1 + "\r\n# END prewarm-agent keys for alice\r\n", true},
		{"keeps foreign keys", "ssh-ed25519 OTHER admin\n", []string{k1}, "\n",
			"ssh-ed25519 OTHER admin\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", true},
		{"replaces block only",
			"a\n# BEGIN prewarm-agent keys for alice\nold\n# END prewarm-agent keys for alice\nb\n", []string{k1, k2}, "\n",
			"a\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n" + k2 + "\n# END prewarm-agent keys for alice\nb\n", true},
		{"unchanged",
			"a\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", []string{k1}, "\n",
			"a\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", false},
		{"unchanged CRLF",
			"a\r\n# BEGIN prewarm-agent keys for alice\r\n" + k1 + "\r\n# END prewarm-agent keys for alice\r\n", []string{k1}, "\n",
			"a\r\n# BEGIN prewarm-agent keys for alice\r\n" + k1 + "\r\n# END prewarm-agent keys for alice\r\n", false},
		{"removes block when no keys",
			"a\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\nb\n", nil, "\n",
			"a\nb\n", true},
		{"no keys no block", "a\n", nil, "\n", "a\n", false},
		{"dedups", "", []string{k1, " " + k1 + " "}, "\n",
			"# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", true},
		{"leaves another owner's block",
			"# BEGIN prewarm-agent keys for bob\nbobkey\n# END prewarm-agent keys for bob\n", []string{k1}, "\n",
			"# BEGIN prewarm-agent keys for bob\nbobkey\n# END prewarm-agent keys for bob\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", true},
		{"adds missing final newline", "a", []string{k1}, "\n",
			"a\n# BEGIN prewarm-agent keys for alice\n" + k1 + "\n# END prewarm-agent keys for alice\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := Set([]byte(tt.in), "alice", tt.keys, tt.eol)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want || changed != tt.wantChange {
				t.Errorf("Set = %q, %v; want %q, %v", got, changed, tt.want, tt.wantChange)
			}
			again, changed2, err := Set(got, "alice", tt.keys, tt.eol)
			if err != nil || changed2 || !bytes.Equal(again, got) {
				t.Errorf("second Set changed the file: %q, %v, %v", again, changed2, err)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	tests := []struct {
		name, in, owner string
		keys            []string
		want            error
	}{
		{"key with newline", "", "alice", []string{k1 + "\nssh-rsa EVIL"}, ErrBadKey},
		{"key with CR", "", "alice", []string{k1 + "\r"}, ErrBadKey},
		{"empty key", "", "alice", []string{"  "}, ErrBadKey},
		{"comment key", "", "alice", []string{"# hi"}, ErrBadKey},
		{"begin without end", "# BEGIN prewarm-agent keys for alice\nx\n", "alice", []string{k1}, ErrBrokenBlock},
		{"end without begin", "x\n# END prewarm-agent keys for alice\n", "alice", []string{k1}, ErrBrokenBlock},
		{"two blocks", strings.Repeat("# BEGIN prewarm-agent keys for alice\n# END prewarm-agent keys for alice\n", 2), "alice", []string{k1}, ErrBrokenBlock},
		{"bad owner", "", "al ice", []string{k1}, ErrBadOwner},
		{"empty owner", "", "", []string{k1}, ErrBadOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Set([]byte(tt.in), tt.owner, tt.keys, "\n"); !errors.Is(err, tt.want) {
				t.Errorf("Set error = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	in := "x\r\n# BEGIN prewarm-agent keys for alice\r\n" + k1 + "\r\n\r\n" + k2 + "\r\n# END prewarm-agent keys for alice\r\n"
	got, err := Keys([]byte(in), "alice")
	if err != nil || len(got) != 2 || got[0] != k1 || got[1] != k2 {
		t.Errorf("Keys = %q, %v", got, err)
	}
	if got, err := Keys([]byte(in), "bob"); err != nil || got != nil {
		t.Errorf("Keys(bob) = %q, %v; want none", got, err)
	}
}

// TestManaged: Linux's one block in the user's own file, replaced where it
// stands, then emptied away, the user's own line kept.
func TestManaged(t *testing.T) {
	user := "ssh-ed25519 AAAAuser me@home\n"
	set := func(old string, keys []string) string {
		t.Helper()
		b, _, err := Managed.Set([]byte(old), keys, "\n")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	begin, end := "# BEGIN prewarm-agent managed keys (do not edit inside this block)", "# END prewarm-agent managed keys"
	got := set(user, []string{"ssh-ed25519 AAAA1 a", "ssh-rsa AAAA2 b"})
	want := user + begin + "\nssh-ed25519 AAAA1 a\nssh-rsa AAAA2 b\n" + end + "\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	got2 := set(got, []string{"ssh-rsa AAAA2 b"})
	if want2 := user + begin + "\nssh-rsa AAAA2 b\n" + end + "\n"; got2 != want2 {
		t.Fatalf("got %q want %q", got2, want2)
	}
	if got3 := set(got2, []string{}); got3 != user {
		t.Fatalf("empty key list: got %q want %q", got3, user)
	}
}

// TestKeepsForeignBytes: lines the agent did not write keep their own
// bytes (CRLF or LF, trailing blanks) when the block changes; only a last
// line without a line ending gets the file's.
func TestKeepsForeignBytes(t *testing.T) {
	b := Managed
	for _, tt := range []struct{ name, in, want string }{
		{"mixed endings before and after",
			"a\r\nb\n" + b.Begin + "\r\nold\r\n" + b.End + "\r\nc \nd\r\n",
			"a\r\nb\n" + b.Begin + "\r\n" + k1 + "\r\n" + b.End + "\r\nc \nd\r\n"},
		{"open last line, LF", "a\nb", "a\nb\n" + b.Begin + "\n" + k1 + "\n" + b.End + "\n"},
		{"open last line, CRLF", "a\r\nb", "a\r\nb\r\n" + b.Begin + "\r\n" + k1 + "\r\n" + b.End + "\r\n"},
		{"open last line after the block", b.Begin + "\nold\n" + b.End + "\nmine", b.Begin + "\n" + k1 + "\n" + b.End + "\nmine\n"},
		{"a lone blank line", "\n", "\n" + b.Begin + "\n" + k1 + "\n" + b.End + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := b.Set([]byte(tt.in), []string{k1}, "\n")
			if err != nil || !changed || string(got) != tt.want {
				t.Fatalf("Set = %q, %v, %v; want %q", got, changed, err, tt.want)
			}
		})
	}
}

// TestBrokenMarkers: markers that do not pair up into at most one block
// (a BEGIN without END, an END without BEGIN, a second block) are refused
// for both kinds of block, with keys to write and without: the agent
// cannot tell its lines from the user's, so it changes nothing rather
// than guess (docs/security.md, guarantee 3).
func TestBrokenMarkers(t *testing.T) {
	alice, err := Owned("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []Block{Managed, alice} {
		for _, tt := range []struct{ name, in string }{
			{"begin without end", "mine-1\n" + b.Begin + "\nold\nmine-2\nmine-3\n"},
			{"begin last line", "mine-1\n" + b.Begin + "\n"},
			{"begin with trailing blanks, no end", b.Begin + " \t\r\nmine\n"},
			{"end without begin", "mine\n" + b.End + "\n"},
			{"end before begin", b.End + "\n" + b.Begin + "\nold\n" + b.End + "\n"},
			{"second block", b.Begin + "\na\n" + b.End + "\nmine\n" + b.Begin + "\nb\n" + b.End + "\n"},
			{"second begin inside", b.Begin + "\na\n" + b.Begin + "\nb\n" + b.End + "\n"},
			{"block then stray end", b.Begin + "\na\n" + b.End + "\nmine\n" + b.End + "\n"},
		} {
			t.Run(b.Begin+"/"+tt.name, func(t *testing.T) {
				for _, keys := range [][]string{{k1}, nil} {
					out, changed, err := b.Set([]byte(tt.in), keys, "\n")
					if !errors.Is(err, ErrBrokenBlock) || out != nil || changed {
						t.Fatalf("keys %q: got %q, %v, %v; want ErrBrokenBlock", keys, out, changed, err)
					}
				}
				if keys, err := b.Keys([]byte(tt.in)); !errors.Is(err, ErrBrokenBlock) || keys != nil {
					t.Fatalf("Keys = %q, %v; want ErrBrokenBlock", keys, err)
				}
			})
		}
	}
}

// FuzzSet feeds arbitrary existing files to both kinds of block (owned:
// Windows' block named after alice; else Linux's Managed block) and holds
// Set against an independent model that works on the file's bytes: a file
// whose markers do not pair up into at most one block is refused and not
// rewritten; otherwise the result is the bytes before the block, the new
// block, and the bytes after it, each kept as they were (a last line
// without a line ending gets the file's), Keys reads the keys back, and
// setting them again changes nothing.
func FuzzSet(f *testing.F) {
	alice, err := Owned("alice")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("", k1, true)
	f.Add("a\n"+alice.Begin+"\nold\n"+alice.End+"\nb", k2, true)
	f.Add("\r\n\r\n"+alice.End, k1, true)
	m := Managed
	f.Add("ssh-ed25519 AAAA me\n", "ssh-rsa BBBB x", false)
	f.Add(m.Begin+"\nold\n"+m.End+"\nmine\n", "", false)
	f.Add(m.End+"\n"+m.Begin+"\n", "k", false)
	// Issue 13: an unterminated block swallowed every line after it.
	f.Add("mine-1\n"+m.Begin+"\nold\nmine-2\nmine-3\n", "k", false)
	f.Add(m.Begin+"\r\nmine\r\n"+m.End+" \r\nmine-2\r\n", "k", false)
	f.Add(m.Begin+"\na\n"+m.End+"\n"+m.Begin+"\nb\n"+m.End+"\n", "k", false)
	f.Add(m.Begin+"\na\n"+m.End+"\nmine\n"+m.End+"\n", "", false)
	f.Fuzz(func(t *testing.T, old, key string, owned bool) {
		b := Managed
		if owned {
			b = alice
		}
		var keys []string
		if CheckKey(key) == nil {
			keys = []string{key}
		}
		want, paired := model(old, b, keys)
		out, changed, err := b.Set([]byte(old), keys, "\n")
		if !paired {
			if !errors.Is(err, ErrBrokenBlock) || out != nil || changed {
				t.Fatalf("broken markers not refused: %q, %v, %v", out, changed, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a file with paired markers: %v", err)
		}
		if string(out) != want || changed != (want != old) {
			t.Fatalf("Set = %q, %v;\nwant %q, %v", out, changed, want, want != old)
		}
		got, err := b.Keys(out)
		if err != nil || len(got) != len(keys) || len(keys) == 1 && got[0] != strings.TrimSpace(key) {
			t.Fatalf("Keys = %q, %v; want %q", got, err, keys)
		}
		again, changed, err := b.Set(out, keys, "\n")
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("Set is not a fixed point: %q, %v, %v", again, changed, err)
		}
	})
}

// model is FuzzSet's independent statement of the rule. It returns what
// Set should make of old, and false where the markers do not pair up.
func model(old string, b Block, keys []string) (string, bool) {
	// Cut old into lines with their byte offsets.
	type line struct {
		text       string
		start, end int // end: past the line's "\n", or len(old)
	}
	var lines []line
	for start := 0; start < len(old); {
		end := len(old)
		if i := strings.IndexByte(old[start:], '\n'); i >= 0 {
			end = start + i + 1
		}
		lines = append(lines, line{strings.TrimRight(old[start:end], " \t\r\n"), start, end})
		start = end
	}
	var begins, ends []line
	for _, l := range lines {
		switch l.text {
		case b.Begin:
			begins = append(begins, l)
		case b.End:
			ends = append(ends, l)
		}
	}
	if len(begins) != len(ends) || len(begins) > 1 || len(begins) == 1 && begins[0].start > ends[0].start {
		return "", false
	}
	eol := "\n"
	if i := strings.IndexByte(old, '\n'); i > 0 && old[i-1] == '\r' {
		eol = "\r\n"
	}
	var block string
	if len(keys) > 0 {
		block = b.Begin + eol + strings.TrimSpace(keys[0]) + eol + b.End + eol
	}
	before, after := old, ""
	if len(begins) == 1 {
		before, after = old[:begins[0].start], old[ends[0].end:]
		// The same block, but for its line endings, is left alone.
		var inside []string
		for _, l := range strings.SplitAfter(old[begins[0].start:ends[0].end], "\n") {
			if l != "" {
				inside = append(inside, strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"))
			}
		}
		if strings.Join(inside, "\n") == strings.TrimSuffix(strings.ReplaceAll(block, eol, "\n"), "\n") && block != "" {
			return old, true
		}
	} else if block == "" {
		return old, true
	}
	closeLine := func(s string) string {
		if s != "" && !strings.HasSuffix(s, "\n") {
			return s + eol
		}
		return s
	}
	return closeLine(before) + block + closeLine(after), true
}
