package api

import (
	"regexp"
	"strings"
	"testing"
)

// ValidInstanceID agrees with InstanceIDPattern.
func TestValidInstanceIDMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(InstanceIDPattern)
	cases := []string{
		"", "a", "Z", "0", "vm-1", "web.01_a-b", ".a", "_a", "-a", "a.", "a b", "a/b", "a\n", "\na",
		"é", "aé", "a\x00", "A" + strings.Repeat("b", 127), "A" + strings.Repeat("b", 128),
		strings.Repeat("-", 5), "9" + strings.Repeat(".", 127),
	}
	for c := range 256 {
		cases = append(cases, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}), string([]byte{byte(c)})+"a")
	}
	for _, id := range cases {
		if got, want := ValidInstanceID(id), re.MatchString(id); got != want {
			t.Errorf("ValidInstanceID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
}

func FuzzValidInstanceID(f *testing.F) {
	re := regexp.MustCompile(InstanceIDPattern)
	f.Add("vm-1")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidInstanceID(id), re.MatchString(id); got != want {
			t.Fatalf("ValidInstanceID(%q) = %v, the pattern says %v", id, got, want)
		}
	})
}
