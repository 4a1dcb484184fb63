package run

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestCmdString(t *testing.T) {
	c := Cmd{Path: `C:\Windows\System32\tzutil.exe`, Args: []string{"/s", "W. Europe Standard Time"}}
	if got, want := c.String(), `C:\Windows\System32\tzutil.exe /s "W. Europe Standard Time"`; got != want {
		t.Errorf("String = %s; want %s", got, want)
	}
}

func TestSystem32(t *testing.T) {
	t.Setenv("SystemRoot", `D:\Win\`)
	if got := Tzutil(); got != `D:\Win\System32\tzutil.exe` {
		t.Errorf("Tzutil = %s", got)
	}
	t.Setenv("SystemRoot", "")
	if got := Netsh(); got != `C:\Windows\System32\netsh.exe` {
		t.Errorf("Netsh = %s", got)
	}
}

func TestExecReportsFailureWithOutput(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses a POSIX shell")
	}
	_, err := Exec{}.Run(context.Background(), Cmd{Path: "sh", Args: []string{"-c", "echo boom; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v; want the output in it", err)
	}
	out, err := Exec{}.Run(context.Background(), Cmd{Path: "sh", Args: []string{"-c", "echo ok"}})
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("Run = %q, %v", out, err)
	}
}
