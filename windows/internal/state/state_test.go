package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/internal/winetest"
)

func TestSaveLoad(t *testing.T) {
	p := filepath.Join(winetest.TempDir(t), "users.json")
	var none struct{ Admins []string }
	if err := Load(p, &none); err != nil || none.Admins != nil {
		t.Fatalf("Load of a missing file = %v, %+v", err, none)
	}
	in := struct{ Admins []string }{[]string{"alice"}}
	if err := Save(p, in); err != nil {
		t.Fatal(err)
	}
	var out struct{ Admins []string }
	if err := Load(p, &out); err != nil || len(out.Admins) != 1 || out.Admins[0] != "alice" {
		t.Fatalf("Load = %v, %+v", err, out)
	}
	if err := Save(p, struct{ Admins []string }{}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(p, &out); err == nil {
		t.Error("Load of a corrupt record succeeded")
	}
}

func TestVerifier(t *testing.T) {
	v, err := NewVerifier([]byte("s3cret!"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, "s3cret") {
		t.Fatal("verifier contains the password")
	}
	if !Matches(v, []byte("s3cret!")) || Matches(v, []byte("s3cret?")) {
		t.Error("Matches gives wrong answers")
	}
	v2, _ := NewVerifier([]byte("s3cret!"))
	if v2 == v {
		t.Error("verifiers are not salted")
	}
	for _, bad := range []string{"", "scrypt1$", "scrypt1$!!$!!", "md5$x$y", "scrypt1$AAAA$AAAA"} {
		if Matches(bad, []byte("s3cret!")) {
			t.Errorf("malformed verifier %q matched", bad)
		}
	}
}
