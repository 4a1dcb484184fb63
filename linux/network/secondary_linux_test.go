package network

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/config"
)

// ROOT TEST: a document moving an interface's address within its subnet
// (10.77.0.5/24 to 10.77.0.6/24, as a claim re-addressing a VM does). The
// new address is the old one's secondary, and with promote_secondaries off
// (the kernel's default, and NetworkManager's) removing the old primary
// took the new one and the default route with it: the apply failed with
// "network is unreachable" and left the link without an address.
func TestNetworkSameSubnetMoveInNetns(t *testing.T) {
	runGuest(t, "TestGuestNetworkSameSubnetMove", "MOVED")
}

func TestGuestNetworkSameSubnetMove(t *testing.T) {
	if !netlab.InGuest() {
		t.Skip("guest side of TestNetworkSameSubnetMoveInNetns; runs inside a test namespace")
	}
	mac, iface := os.Getenv("PWL_MAC"), os.Getenv("PWL_IF")
	// The test's own network namespace: its sysctl, nobody else's.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+iface+"/promote_secondaries", []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logW{}, nil))
	c := New(Options{Root: t.TempDir(), StateDir: t.TempDir(), Runner: noRunner{}, Logger: log, Live: true, RunDir: t.TempDir()})
	ctx := context.Background()
	doc := func(a string) *config.Network {
		return &config.Network{Interfaces: []config.Interface{{
			MAC: config.MustParseMAC(strings.ToUpper(mac)), Addresses: mustPfxs(a), Gateway4: mustAddr("10.77.0.1"),
		}}}
	}
	if _, err := c.ApplyNetwork(ctx, doc("10.77.0.5/24")); err != nil {
		t.Fatal(err)
	}
	res, err := c.ApplyNetwork(ctx, doc("10.77.0.6/24"))
	if err != nil {
		t.Fatalf("move within the subnet: %v (actions %q)", err, res.Actions)
	}
	t.Logf("actions: %q", res.Actions)
	addrs, routes, _ := linkState(t, iface)
	if !slices.Equal(addrs, []string{"10.77.0.6/24"}) || !slices.Contains(routes, "0.0.0.0/0 via 10.77.0.1") {
		t.Fatalf("after the move: addresses %v, routes %v; want 10.77.0.6/24 and the default route", addrs, routes)
	}
	if res, err := c.ApplyNetwork(ctx, doc("10.77.0.6/24")); err != nil || res.Changed {
		t.Fatalf("reapply: %+v, %v; want nothing to change", res, err)
	}
	os.Stdout.WriteString("PWL: MOVED\n")
}
