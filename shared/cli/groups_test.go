package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A host program's help lists its service and admin commands under their
// own headings, the admin heading naming how the commands reach the service.
func TestAddGroupsHelpHeadings(t *testing.T) {
	cmd := func(name string) *cobra.Command {
		return &cobra.Command{Use: name, Short: name + " does things", RunE: func(*cobra.Command, []string) error { return nil }}
	}
	root := &cobra.Command{Use: "prog"}
	AddGroups(root, "admin socket", []*cobra.Command{cmd("serve")}, []*cobra.Command{cmd("claim"), cmd("release")})
	Setup(root, "PROG_", "1.0")
	var out bytes.Buffer
	if code := Execute(root, []string{"--help"}, strings.NewReader(""), &out, &out); code != ExitOK {
		t.Fatalf("--help: exit %d: %s", code, out.String())
	}
	help := out.String()
	svc, adm := strings.Index(help, "Service commands:"), strings.Index(help, "Admin commands (over the admin socket):")
	if svc < 0 || adm < 0 {
		t.Fatalf("help lacks a heading:\n%s", help)
	}
	for _, c := range []struct {
		name  string
		after int
	}{{"serve", svc}, {"claim", adm}, {"release", adm}} {
		i := strings.Index(help, "\n  "+c.name+" ")
		if i < c.after || (c.after == svc && i > adm) {
			t.Errorf("%s is not under its heading:\n%s", c.name, help)
		}
	}
}
