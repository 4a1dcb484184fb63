package run

import (
	"context"
	"errors"
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
