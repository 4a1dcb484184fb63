package guestnet

import (
	"context"
	"strings"
	"testing"
)

func TestListenDeviceUnknown(t *testing.T) {
	_, err := ListenDevice(context.Background(), "127.0.0.1:0", "pwi-nodev0")
	if err == nil || !strings.Contains(err.Error(), "SO_BINDTODEVICE pwi-nodev0") {
		t.Fatalf("err = %v, want SO_BINDTODEVICE failure", err)
	}
}

func TestListenDeviceSharesPort(t *testing.T) {
	// SO_REUSEPORT lets a device-bound listener share the address of the
	// plain one.
	a, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenDevice(context.Background(), a.Addr().String(), "lo")
	if err != nil {
		t.Fatalf("device-bound listener on the same address: %v", err)
	}
	b.Close()
}
