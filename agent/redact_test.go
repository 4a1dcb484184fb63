package agent

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// Every password of a document with many users stays redacted: none is
// dropped to make room for the others.
func TestRedactorKeepsAllSecretsOfADocument(t *testing.T) {
	var users []string
	var pw []string
	for i := 0; i < 500; i++ {
		p := fmt.Sprintf("pw-%03d-secret", i)
		pw = append(pw, p)
		users = append(users, fmt.Sprintf(`{"name":"u%d","password":%q}`, i, p))
	}
	doc := `{"users":[` + strings.Join(users, ",") + `]}`
	r := NewRedactor()
	r.Add(secretsIn([]byte(doc))...)
	for _, p := range pw {
		if got := r.String("useradd failed: " + p); strings.Contains(got, p) {
			t.Fatalf("secret %q survives redaction: %q", p, got)
		}
	}
	// A later document's secrets are kept too, and so are the earlier
	// ones while they fit.
	r.Add("next-doc-secret")
	if got := r.String("next-doc-secret " + pw[0]); strings.Contains(got, "next-doc-secret") || strings.Contains(got, pw[0]) {
		t.Fatalf("after a second document: %q", got)
	}
}

// Secrets of earlier documents are forgotten past the byte bound, oldest
// first; the latest document's never are, even when they alone pass it.
func TestRedactorBoundsOldSecretsByBytes(t *testing.T) {
	r := NewRedactor()
	old := "old-" + strings.Repeat("o", 100)
	r.Add(old)
	var big []string
	for i := 0; i < 2*maxSecretBytes/1000; i++ {
		big = append(big, fmt.Sprintf("%04d", i)+strings.Repeat("b", 996))
	}
	r.Add(big...)
	for _, p := range big {
		if strings.Contains(r.String(p), p) {
			t.Fatal("a secret of the latest document was dropped")
		}
	}
	if r.String(old) != old {
		t.Error("an old secret was kept past the byte bound")
	}
}

// A secret with characters that strconv.Quote or JSON escape is redacted
// in those forms too: inside a %q-formatted message or a JSON text.
func TestRedactorEscapedForms(t *testing.T) {
	for _, p := range []string{`pa"ss`, `back\slash`, "tab\there", "nl\nx", "<amp&>", "ünï\u2028code", "bell\x07"} {
		r := NewRedactor()
		r.Add(p)
		j, _ := json.Marshal("cmd failed: " + p + " end")
		forms := map[string]string{
			"raw":   "cmd failed: " + p,
			"quote": strconv.Quote("cmd failed: " + p + " end"),
			"ascii": strconv.QuoteToASCII("cmd failed: " + p + " end"),
			"json":  string(j),
			"%q":    fmt.Sprintf("error: %q", p),
		}
		for name, s := range forms {
			got := r.String(s)
			if !strings.Contains(got, "REDACTED") {
				t.Errorf("secret %q in %s form survives: %s", p, name, got)
			}
		}
	}
}
