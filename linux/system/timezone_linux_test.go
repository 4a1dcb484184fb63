package system

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTimezoneRefusesLinksOutOfZoneinfo: a zone name whose file in the
// target's zoneinfo tree is a link leaving the tree (localtime, a link to
// /etc/localtime on Debian) or a link loop fails the step, naming the zone,
// and leaves /etc/localtime as it was; a link inside the tree is a zone.
func TestTimezoneRefusesLinksOutOfZoneinfo(t *testing.T) {
	root := scratchRoot(t)
	zi := filepath.Join(root, "usr/share/zoneinfo")
	tzif, err := os.ReadFile(filepath.Join(zi, "UTC"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "etc/secret"), tzif, 0o644)
	os.MkdirAll(filepath.Join(zi, "US"), 0o755)
	for link, target := range map[string]string{
		"localtime":  "/etc/localtime",                  // Debian's own link
		"Away":       "../../../etc/secret",             // relative, out of the tree
		"US/Far":     "../../../../../../../etc/secret", // climbs past the root
		"Loop1":      "Loop2",
		"Loop2":      "Loop1",
		"US/Eastern": "../Europe/Berlin", // a tzdata link: fine
		"Berlin":     "/usr/share/zoneinfo/Europe/Berlin",
	} {
		if err := os.Symlink(target, filepath.Join(zi, link)); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{Root: root, Runner: &fakeRunner{}, Logger: testLogger(t)})
	ctx := context.Background()
	if _, err := s.ApplyTimezone(ctx, "UTC"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Readlink(filepath.Join(root, "etc/localtime"))
	for _, bad := range []string{"localtime", "Away", "US/Far", "Loop1"} {
		res, err := s.ApplyTimezone(ctx, bad)
		if !errors.Is(err, ErrUnknownZone) || !strings.Contains(err.Error(), `"`+bad+`"`) || res.Changed {
			t.Errorf("zone %q: %+v, err %v; want ErrUnknownZone naming it and no change", bad, res, err)
		}
		if l, _ := os.Readlink(filepath.Join(root, "etc/localtime")); l != before {
			t.Errorf("zone %q: /etc/localtime -> %q, was %q", bad, l, before)
		}
	}
	for _, good := range []string{"US/Eastern", "Berlin"} {
		if _, err := s.ApplyTimezone(ctx, good); err != nil {
			t.Errorf("zone %q (a link inside the tree): %v", good, err)
		}
	}
}
