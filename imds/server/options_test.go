package server

import (
	"strings"
	"testing"
)

// Binding host interfaces needs the device-less guest listener the device
// listeners share an address with (and must be newer than); New says which
// option is missing instead of starting a server that cannot bind.
func TestNewGuestBindingOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"BindInterfaces without GuestListener", Options{BindInterfaces: true}, "BindInterfaces needs GuestListener"},
		{"GuestInterfaces without BindInterfaces", Options{GuestInterfaces: []string{"vnet0"}}, "GuestInterfaces needs BindInterfaces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts.DataDir = t.TempDir()
			s, err := New(c.opts)
			if err == nil {
				s.Shutdown(t.Context())
				t.Fatalf("New succeeded, want an error saying %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}
