package config

import (
	"regexp"
	"strings"
	"testing"
)

// The regular expressions the hand-written rules replace (rules.go).
var (
	labelRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userNameRE    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	zoneRE        = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)
	cryptSHARE    = regexp.MustCompile(`^\$(5|6)\$(rounds=[0-9]{1,9}\$)?[./0-9A-Za-z]{1,16}\$([./0-9A-Za-z]+)$`)
	cryptYescrypt = regexp.MustCompile(`^\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{1,86}\$[./0-9A-Za-z]{43}$`)
	shellRE       = regexp.MustCompile(`^/[^\s:\x00-\x1f\x7f]{0,254}$`)
)

func regexpCrypt(h string) bool {
	if m := cryptSHARE.FindStringSubmatch(h); m != nil {
		want := 86
		if m[1] == "5" {
			want = 43
		}
		return len(m[3]) == want
	}
	return cryptYescrypt.MatchString(h)
}

// rulePairs are each rule and its regular expression.
var rulePairs = []struct {
	name   string
	rule   func(string) bool
	regexp func(string) bool
}{
	{"label", validLabel, labelRE.MatchString},
	{"user name", validUserName, userNameRE.MatchString},
	{"zone", validZoneSyntax, zoneRE.MatchString},
	{"shell", validShellSyntax, shellRE.MatchString},
	{"crypt", validCrypt, regexpCrypt},
}

var (
	h43 = strings.Repeat("a", 43)
	h86 = strings.Repeat("B", 86)
)

// ruleCorpus holds each rule's edges: lengths at and past each bound,
// each class's neighbours, invalid UTF-8, and the crypt layouts.
var ruleCorpus = []string{
	"", "a", "-", "a-", "-a", "a-b", "0", "A", "_", "_a", "a_", "a.b", "é", "\xff",
	strings.Repeat("a", 31), strings.Repeat("a", 32), strings.Repeat("a", 33),
	strings.Repeat("a", 62), strings.Repeat("a", 63), strings.Repeat("a", 64),
	"a" + strings.Repeat("-", 61) + "a", "a" + strings.Repeat("-", 62) + "a",
	"Europe/Berlin", "UTC", "Etc/GMT+1", "America/Argentina/Buenos_Aires", "/", "a/", "/a", "a//b", "a b", "a/b.c",
	"/bin/bash", "/", "//", "/bin/ba sh", "/bin:x", "/bin\tx", "/bin\x7f", "/bin\x00", "/bin\n", "/bin\u00e9", "/\xff\xfe",
	"/\u2028", "/\u0085", "bin/bash", "/" + strings.Repeat("x", 254), "/" + strings.Repeat("x", 255),
	"/" + strings.Repeat("é", 254), "/" + strings.Repeat("é", 255), "/" + strings.Repeat("\xff", 254), "/" + strings.Repeat("\xff", 255),
	"$6$salt$" + h86, "$6$salt$" + h43, "$5$salt$" + h43, "$5$salt$" + h86, "$6$rounds=5000$salt$" + h86,
	"$6$rounds=$salt$" + h86, "$6$rounds=1234567890$salt$" + h86, "$6$rounds=123456789$salt$" + h86,
	"$6$" + strings.Repeat("s", 16) + "$" + h86, "$6$" + strings.Repeat("s", 17) + "$" + h86, "$6$$" + h86,
	"$6$salt$" + h86 + "$", "$6$salt$" + h86[1:] + "!", "$6$salt", "$6$rounds=5000$", "$6$rounds=5000", "$7$salt$" + h86,
	"$6$rounds=5000$rounds=5000$salt$" + h86, "$6$sa=lt$" + h86, "$6$salt$" + h86 + "\n",
	"$y$j9T$salt$" + h43, "$y$$salt$" + h43, "$y$j9T$$" + h43, "$y$j9T$salt$" + h43[1:], "$y$j9T$salt$" + h43 + "a",
	"$y$j9T$" + strings.Repeat("s", 86) + "$" + h43, "$y$j9T$" + strings.Repeat("s", 87) + "$" + h43, "$y$j9T$salt$" + h43 + "$",
	"$y$j$9T$salt$" + h43, "$y$j9T$salt", "$y$",
}

func TestRulesMatchTheirRegexps(t *testing.T) {
	for _, p := range rulePairs {
		for _, s := range ruleCorpus {
			if got, want := p.rule(s), p.regexp(s); got != want {
				t.Errorf("%s rule(%q) = %v, its regexp says %v", p.name, s, got, want)
			}
		}
	}
	// The corpus reaches both answers of every rule.
	for _, p := range rulePairs {
		var yes, no bool
		for _, s := range ruleCorpus {
			if p.rule(s) {
				yes = true
			} else {
				no = true
			}
		}
		if !yes || !no {
			t.Errorf("%s: the corpus gives only %v", p.name, yes)
		}
	}
}

func FuzzRulesMatchTheirRegexps(f *testing.F) {
	for _, s := range ruleCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range rulePairs {
			if got, want := p.rule(s), p.regexp(s); got != want {
				t.Errorf("%s rule(%q) = %v, its regexp says %v", p.name, s, got, want)
			}
		}
	})
}
