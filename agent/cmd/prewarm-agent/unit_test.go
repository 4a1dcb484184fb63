package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	units "github.com/prewarm/prewarm/packaging/systemd"
)

// installFlags parses args as `prewarm-agent install` does.
func installFlags(t *testing.T, args ...string) *runFlags {
	t.Helper()
	f := &runFlags{}
	fs := pflag.NewFlagSet("install", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestInstallWritesThePackagedUnit: `prewarm-agent install` of the
// packaged binary with no flags writes the packaged unit byte for byte
// (packaging/systemd/prewarm-agent.service, the file nfpm puts in the .deb
// and .rpm), hardening included.
func TestInstallWritesThePackagedUnit(t *testing.T) {
	onDisk, err := os.ReadFile("../../../packaging/systemd/prewarm-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	got, err := systemdUnit("/usr/bin/prewarm-agent", installFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if got != string(onDisk) || got != units.AgentUnit {
		t.Errorf("install writes a unit other than the packaged one:\n%s", got)
	}
	for _, h := range []string{"\nProtectSystem=", "\nPrivateTmp=yes\n", "\nCapabilityBoundingSet=", "\nNoNewPrivileges=yes\n", "\nType=notify\n", "\nKillMode=process\n"} {
		if !strings.Contains(got, h) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(h))
		}
	}
}

// TestInstallUnitExecStart: a binary elsewhere, or flags given to install,
// change the ExecStart line and nothing else; the words are quoted for
// systemd (spaces, quotes, and the % and $ it would expand).
func TestInstallUnitExecStart(t *testing.T) {
	for _, c := range []struct {
		name, exe string
		args      []string
		want      string
	}{
		{"defaults elsewhere", "/usr/local/bin/prewarm-agent", nil,
			`ExecStart=/usr/local/bin/prewarm-agent run $PREWARM_AGENT_OPTS`},
		{"flags", "/usr/bin/prewarm-agent", []string{"--imds-url=http://10.0.0.1:8080", "--interfaces=eth0,eth1", "--log-level=debug", "--state-dir=" + defaultDirs().state}, // a default: dropped
			`ExecStart=/usr/bin/prewarm-agent run --imds-url=http://10.0.0.1:8080 --interfaces=eth0,eth1 --log-level=debug $PREWARM_AGENT_OPTS`},
		{"quoting", `/opt/pre warm/prewarm-agent`, []string{`--manage-existing-users=a"b`, "--interfaces=e%th", "--root=/mnt/$x"},
			`ExecStart="/opt/pre warm/prewarm-agent" run --root=/mnt/$$x --interfaces=e%%th "--manage-existing-users=a\"b" $PREWARM_AGENT_OPTS`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := systemdUnit(c.exe, installFlags(t, c.args...))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Replace(units.AgentUnit, units.AgentExecStart, c.want+"\n", 1)
			if got != want {
				t.Errorf("unit differs; ExecStart lines:\n got %s\nwant %s", execStart(got), c.want)
			}
		})
	}
	if _, err := systemdUnit("/opt/{{x}}/prewarm-agent", installFlags(t)); err == nil {
		t.Error("a path kardianos would read as a template action was accepted")
	}
}

func execStart(unit string) string {
	for l := range strings.Lines(unit) {
		if strings.HasPrefix(l, "ExecStart=") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
