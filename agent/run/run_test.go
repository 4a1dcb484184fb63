package run

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestCmdString(t *testing.T) {
	for _, tt := range []struct {
		c    Cmd
		want string
	}{
		{Cmd{Name: "tzutil", Args: []string{"/s", "W. Europe Standard Time"}}, `tzutil /s "W. Europe Standard Time"`},
		{Cmd{Name: "useradd", Args: []string{"--root", "/target", "alice"}, Stdin: []byte("secret")}, "useradd --root /target alice"},
		{Cmd{Name: "hostnamectl"}, "hostnamectl"},
	} {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String = %s; want %s", got, tt.want)
		}
	}
}

func TestSystem32(t *testing.T) {
	t.Setenv("SystemRoot", `D:\Win\`)
	if got := System32("tzutil.exe"); got != `D:\Win\System32\tzutil.exe` {
		t.Errorf("System32 = %s", got)
	}
	t.Setenv("SystemRoot", "")
	if got := System32("netsh.exe"); got != `C:\Windows\System32\netsh.exe` {
		t.Errorf("System32 = %s", got)
	}
}

// TestExitErrorMessage: the message is the command's standard error, or
// its standard output where it writes its errors there (netsh), bounded.
func TestExitErrorMessage(t *testing.T) {
	exit := errors.New("exit status 1")
	for _, tt := range []struct {
		e    ExitError
		want string
	}{
		{ExitError{Cmd: "ip x", Stderr: "Object \"x\" is unknown\n", Stdout: "ignored", Err: exit}, `ip x: exit status 1: Object "x" is unknown`},
		{ExitError{Cmd: "netsh a", Stdout: "\r\nThe filename is incorrect.\r\n", Err: exit}, "netsh a: exit status 1: The filename is incorrect."},
		{ExitError{Cmd: "true", Err: exit}, "true: exit status 1"},
		{ExitError{Cmd: "c", Stderr: strings.Repeat("x", 600), Err: exit}, "c: exit status 1: " + strings.Repeat("x", 512) + "..."},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error = %q; want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, exit) {
			t.Errorf("%q does not unwrap to the exit", tt.e.Error())
		}
	}
}

func TestDefaults(t *testing.T) {
	log, r := Defaults(nil, nil)
	if log == nil {
		t.Fatal("nil logger stayed nil")
	}
	if e, ok := r.(*Exec); !ok || e.Logger != log {
		t.Fatalf("nil runner became %#v; want an Exec logging to the default logger", r)
	}
	mine := slog.New(slog.DiscardHandler)
	given := &Exec{}
	if l, r := Defaults(mine, given); l != mine || r != given {
		t.Fatalf("Defaults(set, set) = %p, %p; want them unchanged", l, r)
	}
	if _, r := Defaults(mine, nil); r.(*Exec).Logger != mine {
		t.Fatal("the default runner does not log to the given logger")
	}
}
