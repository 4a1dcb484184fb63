package system

import (
	"strings"
	"testing"
)

// FuzzHostsWith: the result has exactly one 127.0.1.1 line and rewriting
// it again changes nothing.
func FuzzHostsWith(f *testing.F) {
	f.Add("127.0.0.1 localhost\n127.0.1.1 a\n127.0.1.1 b\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, old string) {
		line := "127.0.1.1\tweb-01"
		once := hostsWith([]byte(old), line)
		if n := strings.Count(string(once), "\n127.0.1.1\t") + map[bool]int{true: 1}[strings.HasPrefix(string(once), "127.0.1.1\t")]; n < 1 {
			t.Fatalf("no 127.0.1.1 line in %q", once)
		}
		if twice := hostsWith(once, line); string(twice) != string(once) {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
	})
}
