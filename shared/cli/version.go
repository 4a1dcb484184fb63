package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Commit is the commit the binary was built from when the build info
// has none (go build -buildvcs=false): set it with
// -ldflags "-X github.com/prewarm/prewarm/shared/cli.Commit=<sha>".
var Commit = ""

// VersionInfo is what version prints; its JSON is stable.
type VersionInfo struct {
	Program   string `json:"program"`
	Version   string `json:"version"`
	Module    string `json:"module"`
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Version returns program's version information: version is its release
// version; the module version, commit and Go version come from the build
// info.
func Version(program, version string) VersionInfo {
	v := VersionInfo{Program: program, Version: version, Module: "(devel)", Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Module = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func (v VersionInfo) String() string {
	c := v.Commit
	if v.Modified {
		c += "-dirty"
	}
	return fmt.Sprintf("%s %s (module %s, commit %s, %s, %s)", v.Program, v.Version, v.Module, c, v.GoVersion, v.Platform)
}

// addVersion adds the version command and --version to root.
func addVersion(root *cobra.Command, version string) {
	info := Version(root.Name(), version)
	root.Version = version
	root.SetVersionTemplate(info.String() + "\n")
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit and Go version",
		Example: fmt.Sprintf("  %s version\n  %s version --output json\n  %s --version", root.Name(), root.Name(), root.Name()),
		Args:    NoArgs,
	}
	out := AddOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if out.JSON() {
			return WriteJSON(cmd.OutOrStdout(), info)
		}
		_, err := fmt.Fprintln(cmd.OutOrStdout(), info.String())
		return err
	}
	root.AddCommand(cmd)
}
