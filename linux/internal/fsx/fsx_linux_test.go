package fsx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for i, want := range []bool{true, false} {
		changed, err := WriteFile(p, []byte("a\n"), WriteOptions{Mode: 0o640})
		if err != nil || changed != want {
			t.Fatalf("write %d: changed %v, %v; want %v", i, changed, err, want)
		}
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
	if changed, _ := WriteFile(p, []byte("a\n"), WriteOptions{Mode: 0o600}); !changed {
		t.Fatal("a mode change is a change")
	}
	bad := errors.New("rejected")
	if _, err := WriteFile(p, []byte("b\n"), WriteOptions{Mode: 0o600, Validate: func(string) error { return bad }}); !errors.Is(err, bad) {
		t.Fatalf("validate: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "a\n" {
		t.Fatalf("a rejected write replaced the file: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	l := filepath.Join(dir, "l")
	for i, want := range []bool{true, false} {
		if changed, err := Symlink("/usr/share/zoneinfo/UTC", l); err != nil || changed != want {
			t.Fatalf("symlink %d: %v %v", i, changed, err)
		}
	}
	if got := Join("/tmp/root", "../../etc/passwd"); got != "/tmp/root/etc/passwd" {
		t.Fatalf("Join escaped the root: %s", got)
	}
}

func TestWriteJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "rec.json")
	if err := WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("content %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", st.Mode())
	}
	if st, _ := os.Stat(filepath.Dir(p)); st.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", st.Mode())
	}
	if err := WriteJSON(p, func() {}); err == nil {
		t.Fatal("a value JSON cannot encode was written")
	}
}
