package run

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestExec(t *testing.T) {
	e := &Exec{}
	if _, err := e.Run(context.Background(), Cmd{Name: "no-such-tool"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := e.Look("ip"); err != nil {
		t.Skip("iproute2 not installed")
	}
	out, err := e.Run(context.Background(), Cmd{Name: "ip", Args: []string{"-o", "link", "show", "lo"}})
	if err != nil || !strings.Contains(string(out), "lo") {
		t.Fatalf("ip link show lo: %q, %v", out, err)
	}
	_, err = e.Run(context.Background(), Cmd{Name: "ip", Args: []string{"no-such-object"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code == 0 || ee.Stderr == "" {
		t.Fatalf("failing command: %v", err)
	}
}

// TestExecReportsFailureWithOutput: a command that says why it failed on
// its standard output (as netsh does) has that in the error; the output of
// one that succeeds is returned.
func TestExecReportsFailureWithOutput(t *testing.T) {
	Paths["sh"] = []string{"/bin/sh", "/usr/bin/sh"}
	t.Cleanup(func() { delete(Paths, "sh") })
	e := &Exec{}
	_, err := e.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo boom; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v; want exit 3 with the output in it", err)
	}
	out, err := e.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo ok; echo noise >&2"}, Stdin: []byte("x")})
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("Run = %q, %v", out, err)
	}
}

// TestPaths: the table places each command in /usr first, then the root
// directory, and ip in /bin last.
func TestPaths(t *testing.T) {
	for name, want := range map[string][]string{
		"useradd":    {"/usr/sbin/useradd", "/sbin/useradd"},
		"dhcpcd":     {"/usr/sbin/dhcpcd", "/sbin/dhcpcd"},
		"systemctl":  {"/usr/bin/systemctl", "/bin/systemctl"},
		"ssh-keygen": {"/usr/bin/ssh-keygen", "/bin/ssh-keygen"},
		"ip":         {"/usr/sbin/ip", "/sbin/ip", "/bin/ip"},
	} {
		if got := Paths[name]; !slices.Equal(got, want) {
			t.Errorf("Paths[%q] = %q, want %q", name, got, want)
		}
	}
	if len(Paths) != 16 {
		t.Errorf("%d commands in Paths, want 16: %v", len(Paths), slices.Sorted(maps.Keys(Paths)))
	}
}
