package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/shared/cli"
)

// prewarm-imds serve builds serve's command alone, with the same flags
// and environment as in the whole tree; everything else gets the whole
// tree.
func TestServeRootAlone(t *testing.T) {
	find := func(root *cobra.Command, name string) *cobra.Command {
		for _, c := range root.Commands() {
			if c.Name() == name {
				return c
			}
		}
		return nil
	}
	flags := func(c *cobra.Command) []string {
		var names []string
		c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name+"="+f.DefValue) })
		slices.Sort(names)
		return names
	}
	alone, whole := rootFor([]string{"serve"}), rootFor([]string{"list"})
	if find(alone, "list") != nil || find(alone, "store") != nil {
		t.Fatal("serve's tree builds the admin commands")
	}
	if find(whole, "list") == nil || find(whole, "store") == nil {
		t.Fatal("list's tree lacks the admin commands")
	}
	if a, w := flags(find(alone, "serve")), flags(find(whole, "serve")); !slices.Equal(a, w) {
		t.Fatalf("serve's flags alone %v, in the whole tree %v", a, w)
	}
	// The environment applies as in the whole tree: an empty listen and
	// admin socket from it leave nothing to serve (a usage error).
	t.Setenv(envPrefix+"LISTEN", "")
	t.Setenv(envPrefix+"ADMIN_SOCKET", "")
	var o, e bytes.Buffer
	if code := run([]string{"serve", "--data-dir", t.TempDir()}, strings.NewReader(""), &o, &e); code != cli.ExitUsage || !strings.Contains(e.String(), "nothing to serve") {
		t.Fatalf("serve with nothing to serve: exit %d, %q", code, e.String())
	}
}
