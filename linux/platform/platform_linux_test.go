package platform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prewarm/prewarm/linux/dhcp"
	"github.com/prewarm/prewarm/linux/system"
	"github.com/prewarm/prewarm/shared/config"
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

// TestNewUsersRule: the image builder's list reaches the users step (an
// existing account on it is managed, one off it refused), and the record
// of created accounts lives in the state directory inside the target root.
func TestNewUsersRule(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nlisted:x:1500:1500::/home/listed:/bin/sh\nother:x:1501:1501::/home/other:/bin/sh\n"), 0o644))
	p, err := New(Options{Root: root, StateDir: "/var/lib/prewarm-test", DHCPClient: "builtin", ManageExistingUsers: []string{"listed"}})
	must(err)
	ctx := context.Background()
	// No change asked for: nothing runs, only the rule is applied.
	if _, err := p.Users.ApplyUsers(ctx, []config.User{{Name: "listed", Shell: "/bin/sh"}}); err != nil {
		t.Fatalf("listed: %v", err)
	}
	if _, err := p.Users.ApplyUsers(ctx, []config.User{{Name: "other"}}); !errors.Is(err, system.ErrUnmanagedAccount) {
		t.Fatalf("not listed: err %v, want ErrUnmanagedAccount", err)
	}
	must(os.MkdirAll(filepath.Join(root, "var/lib/prewarm-test"), 0o700))
	must(os.WriteFile(filepath.Join(root, "var/lib/prewarm-test/users.json"), []byte(`{"created":[{"name":"other","uid":1501}]}`), 0o600))
	if _, err := p.Users.ApplyUsers(ctx, []config.User{{Name: "other"}}); err != nil {
		t.Fatalf("recorded in the state directory inside the root: %v", err)
	}
}
