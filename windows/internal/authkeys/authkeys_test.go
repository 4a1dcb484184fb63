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

// FuzzSet feeds arbitrary existing files: Set either refuses with a typed
// error or produces a file whose block holds exactly the keys, keeps every
// foreign line, and is a fixed point.
func FuzzSet(f *testing.F) {
	f.Add("", k1)
	f.Add("a\n# BEGIN prewarm-agent keys for alice\nold\n# END prewarm-agent keys for alice\nb", k2)
	f.Add("\r\n\r\n# END prewarm-agent keys for alice", k1)
	f.Fuzz(func(t *testing.T, in, key string) {
		keys := []string{key}
		if CheckKey(key) != nil {
			keys = nil
		}
		out, _, err := Set([]byte(in), "alice", keys, "\n")
		if err != nil {
			if !errors.Is(err, ErrBrokenBlock) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		got, err := Keys(out, "alice")
		if err != nil {
			t.Fatalf("Keys after Set: %v", err)
		}
		if len(got) != len(keys) || (len(keys) == 1 && got[0] != strings.TrimSpace(key)) {
			t.Fatalf("Keys = %q; want %q", got, keys)
		}
		again, changed, err := Set(out, "alice", keys, "\n")
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("Set is not a fixed point: changed=%v err=%v", changed, err)
		}
	})
}
