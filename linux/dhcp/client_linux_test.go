package dhcp

import (
	"context"
	"testing"
)

// TestDHCPClient: the client named before a renewal is the one detected
// for the interface (here on lo, which every network namespace has), the
// built-in one when none runs, and an unknown interface is an error naming
// it.
func TestDHCPClient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		procs [][]string
		want  string
	}{
		{[][]string{{"dhclient", "dhclient", "-v", "lo"}}, Dhclient},
		{[][]string{{"udhcpc", "udhcpc", "-i", "lo"}}, Udhcpc},
		{nil, Builtin},
	} {
		r, err := New(Options{ProcDir: fakeProc(t, tc.procs...), RunDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.DHCPClient(ctx, "lo"); err != nil || got != tc.want {
			t.Errorf("%v: DHCPClient = %q, %v; want %s", tc.procs, got, err, tc.want)
		}
	}
	r, _ := New(Options{ProcDir: fakeProc(t)})
	if _, err := r.DHCPClient(ctx, "nosuch0"); err == nil {
		t.Error("an unknown interface named no error")
	}
}
