package status

import (
	"regexp"
	"testing"
)

// TestValidKeyTypeMatchesRule checks the loop against the rule it replaced.
func TestValidKeyTypeMatchesRule(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9@.-]{0,63}$`)
	cases := []string{"", "ssh-ed25519", "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com", "rsa-sha2-512",
		"-ssh", "@x", ".x", "Ssh-rsa", "ssh rsa", "ssh_rsa", "a", "0", "ssh-ed25519\n", "é"}
	long := "a"
	for i := 0; i < 70; i++ {
		long += "b"
		cases = append(cases, long)
	}
	for _, c := range cases {
		if got, want := validKeyType(c), re.MatchString(c); got != want {
			t.Errorf("validKeyType(%q) = %v, the rule says %v", c, got, want)
		}
	}
}

func FuzzValidKeyType(f *testing.F) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9@.-]{0,63}$`)
	f.Add("ssh-ed25519")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validKeyType(s), re.MatchString(s); got != want {
			t.Fatalf("validKeyType(%q) = %v, the rule says %v", s, got, want)
		}
	})
}
