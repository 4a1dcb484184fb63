package server

import (
	"context"
	"strings"
	"testing"
)

func TestListenGuestUnknownDevice(t *testing.T) {
	_, err := ListenGuest(context.Background(), "127.0.0.1:0", "pwi-nodev0")
	if err == nil || !strings.Contains(err.Error(), "SO_BINDTODEVICE pwi-nodev0") {
		t.Fatalf("err = %v, want SO_BINDTODEVICE failure", err)
	}
}

func TestListenGuestSharesPort(t *testing.T) {
	// SO_REUSEPORT lets a device-bound listener share the address of the
	// plain one.
	a, err := ListenGuest(context.Background(), "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenGuest(context.Background(), a.Addr().String(), "lo")
	if err != nil {
		t.Fatalf("device-bound listener on the same address: %v", err)
	}
	b.Close()
}
