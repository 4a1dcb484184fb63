package config

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestSSHHostKeysDecode(t *testing.T) {
	tests := []struct {
		doc   string
		want  *int64 // regenerate; nil with ok: section absent or field absent
		path  string // "" = valid
		isNil bool   // the section is absent
	}{
		{doc: `{}`, isNil: true},
		{doc: `{"sshHostKeys": null}`, isNil: true},
		{doc: `{"sshHostKeys": {}}`},
		{doc: `{"sshHostKeys": {"regenerate": 1}}`, want: hkPtr(int64(1))},
		{doc: `{"sshHostKeys": {"regenerate": 7}}`, want: hkPtr(int64(7))},
		{doc: `{"sshHostKeys": {"regenerate": 0}}`, path: "sshHostKeys.regenerate"},
		{doc: `{"sshHostKeys": {"regenerate": -1}}`, path: "sshHostKeys.regenerate"},
		{doc: `{"sshHostKeys": {"regenerate": true}}`, path: "sshHostKeys.regenerate"},
		{doc: `{"sshHostKeys": {"regenerate": 1.5}}`, path: "sshHostKeys.regenerate"},
		{doc: `{"sshHostKeys": {"rotate": 1}}`, path: "sshHostKeys.rotate"},
		{doc: `{"sshHostKeys": true}`, path: "sshHostKeys"},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			d, err := Decode([]byte(tc.doc))
			if tc.path != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tc.path {
					t.Fatalf("want one field error at %s, got %v", tc.path, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.isNil {
				if d.SSHHostKeys != nil {
					t.Fatalf("absent section decoded as %+v", d.SSHHostKeys)
				}
				return
			}
			if d.SSHHostKeys == nil {
				t.Fatal("present section decoded as absent")
			}
			got := d.SSHHostKeys.Regenerate
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("regenerate %v, want %v", got, tc.want)
			}
			// Round trip: encoding keeps the section as it was.
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			d2, err := Decode(b)
			if err != nil {
				t.Fatalf("re-decode %s: %v", b, err)
			}
			if d2.SSHHostKeys == nil || (d2.SSHHostKeys.Regenerate == nil) != (got == nil) {
				t.Fatalf("round trip lost the section: %s", b)
			}
		})
	}
}

func TestSSHHostKeysClone(t *testing.T) {
	d := &Document{SSHHostKeys: &SSHHostKeys{Regenerate: hkPtr(int64(3))}}
	c := d.Clone()
	*c.SSHHostKeys.Regenerate = 4
	if *d.SSHHostKeys.Regenerate != 3 {
		t.Fatal("Clone shares sshHostKeys.regenerate with the original")
	}
	bad := &Document{SSHHostKeys: &SSHHostKeys{Regenerate: hkPtr(int64(0))}}
	var ve *ValidationError
	if err := bad.Validate(); !errors.As(err, &ve) || ve.Fields[0].Path != "sshHostKeys.regenerate" {
		t.Fatalf("Validate of regenerate 0: %v", err)
	}
}

func hkPtr[T any](v T) *T { return &v }
