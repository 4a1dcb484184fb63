package platform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prewarm/prewarm/linux/dhcp"
	"github.com/prewarm/prewarm/linux/system"
)

func TestNew(t *testing.T) {
	if _, err := New(Options{DHCPClient: "pump"}); !errors.Is(err, dhcp.ErrUnknownClient) {
		t.Fatalf("unknown client: err %v", err)
	}
	if _, err := New(Options{Root: "relative"}); err == nil {
		t.Fatal("relative root accepted")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	p, err := New(Options{Root: root, StateDir: t.TempDir(), DHCPClient: "builtin"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Links == nil || p.DHCP == nil || p.Hostname == nil || p.Timezone == nil || p.Users == nil || p.Network == nil {
		t.Fatalf("incomplete platform %+v", p)
	}
	// An offline root: files only, never the kernel hostname.
	res, err := p.Hostname.ApplyHostname(context.Background(), "image-01")
	if err != nil || !res.Changed {
		t.Fatalf("hostname: %+v, %v", res, err)
	}
	for _, a := range res.Actions {
		if a == "set kernel hostname" {
			t.Fatal("an offline root set the kernel hostname")
		}
	}
	if _, err := p.Timezone.ApplyTimezone(context.Background(), "No/Such_Zone"); !errors.Is(err, system.ErrUnknownZone) {
		t.Fatalf("timezone: %v", err)
	}
}
