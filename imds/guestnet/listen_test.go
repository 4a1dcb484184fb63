package guestnet

import (
	"context"
	"net"
	"testing"
)

// The device listeners bind the host Listen was given, on the port the
// kernel chose for the device-less one.
func TestListenBindAddr(t *testing.T) {
	for _, c := range []struct{ addr, host string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{":0", ""},
	} {
		ln, err := Listen(context.Background(), c.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		if want := net.JoinHostPort(c.host, port); ln.addr != want || port == "0" {
			t.Errorf("Listen(%q): device listeners would bind %q, want %q", c.addr, ln.addr, want)
		}
		ln.Close()
	}
	if _, err := Listen(context.Background(), "127.0.0.1"); err == nil {
		t.Error("Listen without a port succeeded")
	}
	if _, err := ListenDevice(context.Background(), "127.0.0.1:0", ""); err == nil {
		t.Error("ListenDevice without a device succeeded")
	}
}
