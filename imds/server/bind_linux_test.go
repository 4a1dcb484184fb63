package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/shared/api"
)

// TestBinderLoopback registers "lo" as a host interface: the binder binds
// a listener to it, and requests on loopback belong to that instance
// rather than to the one registered by address; unregistering closes it.
func TestBinderLoopback(t *testing.T) {
	probe, err := guestnet.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	s := newTestServer(t, Options{GuestListener: probe, BindInterfaces: true})
	go s.ServeGuest(probe, "")
	mustRegister(t, s, "vm-addr", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustRegister(t, s, "vm-lo", api.Registration{HostInterface: "lo"})
	waitBoundOn(t, s, "lo")
	// SO_REUSEPORT spreads nothing here: the device-bound socket wins.
	for i := 0; i < 5; i++ {
		if got := whoOn(t, addr); got != "vm-lo" {
			t.Fatalf("request %d on lo: %q, want vm-lo", i, got)
		}
	}
	mustRegister(t, s, "vm-lo", api.Registration{Addresses: []string{"127.0.0.5"}})
	waitBoundOn(t, s, "")
	if got := whoOn(t, addr); got != "vm-addr" {
		t.Fatalf("after unbinding: %q, want vm-addr", got)
	}
}

// whoOn asks the guest listener at addr which instance the caller is
// ("" when it is unknown).
func whoOn(t *testing.T, addr string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+api.PathInstance, nil)
	req.Header.Set("Metadata", "true")
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info api.InstanceInfo
	json.NewDecoder(resp.Body).Decode(&info)
	return info.InstanceID
}

func waitBoundOn(t *testing.T, s *Server, want string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if strings.Join(s.binder.Bound(), ",") == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("bound %v, want %q", s.binder.Bound(), want)
}

// A listener the binder opened for a registered hostInterface never falls
// back to the source address: while its device has no instance (before
// the binder closes it), a guest on it cannot pass for an address-only
// instance by using that instance's address.
func TestBinderListenerNoAddressFallback(t *testing.T) {
	probe, err := guestnet.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	s := newTestServer(t, Options{GuestListener: probe, BindInterfaces: true})
	go s.ServeGuest(probe, "")
	mustRegister(t, s, "vm-addr", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustRegister(t, s, "vm-lo", api.Registration{HostInterface: "lo"})
	waitBoundOn(t, s, "lo")
	// The window between the device losing its instance and the binder
	// closing its listener, held open.
	s.mu.Lock()
	delete(s.byIface, "lo")
	s.mu.Unlock()
	if got := whoOn(t, addr); got != "" {
		t.Fatalf("request on lo's listener with no instance on lo answered as %q, want unknown", got)
	}
}

// A static --guest-interface listener still serves address-only guests
// behind its device.
func TestStaticGuestInterfaceAddressFallback(t *testing.T) {
	probe, err := guestnet.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	s := newTestServer(t, Options{GuestListener: probe, BindInterfaces: true, GuestInterfaces: []string{"lo"}})
	go s.ServeGuest(probe, "")
	mustRegister(t, s, "vm-addr", api.Registration{Addresses: []string{"127.0.0.1"}})
	waitBoundOn(t, s, "lo")
	if got := whoOn(t, addr); got != "vm-addr" {
		t.Fatalf("request on static lo listener: %q, want vm-addr", got)
	}
	mustRegister(t, s, "vm-lo", api.Registration{HostInterface: "lo"})
	if got := whoOn(t, addr); got != "vm-lo" {
		t.Fatalf("after registering lo: %q, want vm-lo", got)
	}
}
