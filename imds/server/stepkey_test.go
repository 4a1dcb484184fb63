package server

import (
	"strings"
	"testing"
)

// A step's log key is its name when the name has a key's shape (a
// lower-case letter, then up to 31 letters and digits), else step<i>.
func TestStepKey(t *testing.T) {
	for _, c := range []struct {
		name string
		want string
	}{
		{"network", "network"},
		{"sshKeys2", "sshKeys2"},
		{"a" + strings.Repeat("b", 31), "a" + strings.Repeat("b", 31)},
		{"a" + strings.Repeat("b", 32), "step3"},
		{"", "step3"},
		{"Network", "step3"},
		{"bad key", "step3"},
		{"x\n", "step3"},
	} {
		if got := stepKey(c.name, 3); got != c.want {
			t.Errorf("stepKey(%q, 3) = %q, want %q", c.name, got, c.want)
		}
	}
}
