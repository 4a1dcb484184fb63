package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must never panic, must
// either return a document or a *ValidationError / ErrTooLarge, and every
// document it accepts must encode, decode again and still validate.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"users":[{}]}`, `{"network":{"interfaces":[{"routes":[{}]}]}}`, `{"hostname":"a.b","timezone":"UTC"}`, `{"generation":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if ve != nil && len(ve.Fields) == 0 {
				t.Fatal("ValidationError without fields")
			}
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal of an accepted document: %v", err)
		}
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-decoding an accepted document: %v\n%s", err, b)
		}
	})
}
