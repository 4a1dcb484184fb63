package verify

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// lastStatement returns the last line of a script that is neither blank
// nor a comment.
func lastStatement(script string) string {
	lines := strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

// TestCalledScriptsSetExitCode: integration.ps1 runs the other scripts with
// & and judges them by $LASTEXITCODE, which a script that ends without exit
// leaves as it was: unset (so "-eq 0" fails a script that passed) or the
// exit code of whatever native command ran last. Each script it calls so
// must end with an explicit exit.
func TestCalledScriptsSetExitCode(t *testing.T) {
	b, err := os.ReadFile("integration.ps1")
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`& "\$verify\\([A-Za-z0-9_-]+\.ps1)"`)
	calls := call.FindAllStringSubmatch(string(b), -1)
	if len(calls) == 0 {
		t.Fatal("integration.ps1 calls no script of windows/verify: the pattern is stale")
	}
	for _, c := range calls {
		s, err := os.ReadFile(c[1])
		if err != nil {
			t.Errorf("integration.ps1 calls %s: %v", c[1], err)
			continue
		}
		if last := lastStatement(string(s)); !strings.HasPrefix(strings.ToLower(last), "exit") {
			t.Errorf("%s ends with %q, not exit: integration.ps1's $LASTEXITCODE check does not see its result", c[1], last)
		}
	}
}

// TestNoCIOnlyPathInJoinPath: the scripts run by hand too, where the
// runner's variables (RUNNER_TEMP, GITHUB_WORKSPACE) are unset, and
// Join-Path refuses a null path with a terminating error before any
// fallback runs.
func TestNoCIOnlyPathInJoinPath(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`(?i)Join-Path\s+(-Path\s+)?\$env:(RUNNER_|GITHUB_)\w*`)
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ps1") {
			continue
		}
		n++
		b, err := os.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			if m := bad.FindString(l); m != "" {
				t.Errorf("%s:%d: %s: unset outside CI", e.Name(), i+1, m)
			}
		}
	}
	if n == 0 {
		t.Fatal("no .ps1 scripts found")
	}
}

// TestChecksFromLib: Check and the exit code of the checks live in lib.ps1
// only; a script that checks dot-sources it and defines no Check of its own
// (four copies of it were kept in step by hand before).
func TestChecksFromLib(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	uses := regexp.MustCompile(`(?m)^\s*Check\s+['"(]`)
	defines := regexp.MustCompile(`(?mi)^\s*function\s+Check\b`)
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ps1") || e.Name() == "lib.ps1" {
			continue
		}
		b, err := os.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if defines.MatchString(s) {
			t.Errorf("%s defines its own Check: dot-source lib.ps1 instead", e.Name())
		}
		if !uses.MatchString(s) {
			continue
		}
		n++
		if !strings.Contains(s, ". (Join-Path $PSScriptRoot 'lib.ps1')") {
			t.Errorf("%s calls Check without dot-sourcing lib.ps1", e.Name())
		}
	}
	if n == 0 {
		t.Fatal("no script calls Check: the pattern is stale")
	}
	lib, err := os.ReadFile("lib.ps1")
	if err != nil {
		t.Fatal(err)
	}
	if !defines.Match(lib) {
		t.Error("lib.ps1 defines no Check")
	}
}
