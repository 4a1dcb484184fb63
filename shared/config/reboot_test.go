package config

import (
	"strings"
	"testing"
)

func TestReboot(t *testing.T) {
	for _, tt := range []struct{ doc, policy, err string }{
		{`{}`, RebootNever, ""},
		{`{"reboot":null}`, RebootNever, ""},
		{`{"reboot":"never"}`, RebootNever, ""},
		{`{"reboot":"allowed"}`, RebootAllowed, ""},
		{`{"reboot":"always"}`, "", `reboot: must be "allowed" or "never" (got "always")`},
		{`{"reboot":""}`, "", "reboot: must not be empty"},
		{`{"reboot":true}`, "", "reboot: must be a string"},
	} {
		d, err := Decode([]byte(tt.doc))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v; want %q", tt.doc, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.doc, err)
			continue
		}
		if p := d.RebootPolicy(); p != tt.policy {
			t.Errorf("%s: policy %q; want %q", tt.doc, p, tt.policy)
		}
	}
}
