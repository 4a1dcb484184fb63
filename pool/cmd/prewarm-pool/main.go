// Command prewarm-pool keeps warm pools of VMs on libvirt and hands them to
// claims (docs/pool.md).
//
//	prewarm-pool serve --config FILE [--log-level L] [--log-format text|json]
//	prewarm-pool claim FLAVOR --config DOC.json [--network NAME] [--claim-id ID] [--ip IP] [--timeout 30s] [--output table|json]
//	prewarm-pool status [--output table|json]
//	prewarm-pool release VM
//	prewarm-pool version | completion SHELL
//
// The client commands talk to the controller's admin API on --socket
// (default /run/prewarm/pool.sock). Every flag can also come from
// PREWARM_POOL_<FLAG> (except claim's --config, the claim's document);
// exit codes and the JSON forms are in docs/cli.md.
package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/shared/cli"
)

// version is the release version; release builds set it with -ldflags
// "-X main.version=...", as for prewarm-imds.
var version = "0.1.0"

// envPrefix names the environment variables that set flags.
const envPrefix = "PREWARM_POOL_"

func main() {
	os.Exit(cli.Main(newRoot()))
}

// run runs the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Execute(newRoot(), args, stdin, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "prewarm-pool",
		Short: "Prewarm pool controller: warm VMs on libvirt, handed to claims",
		Long: `prewarm-pool keeps a pool of booted, partially configured VMs per flavor
on libvirt (serve) and hands one to a claim with its final config document,
or boots one cold when none is warm (docs/pool.md). The other commands
drive a running controller over its admin socket.

Every flag can also be set by an environment variable PREWARM_POOL_<FLAG>
(--socket: PREWARM_POOL_SOCKET); a flag on the command line wins over the
environment. Claim's --config (the claim's document) is the exception: it
comes from the command line only, as PREWARM_POOL_CONFIG is serve's file.

Exit codes: 0 success, 1 other failure, 2 usage error, 3 the guest reported
failed, 4 timeout, 5 the controller is unreachable, 6 not found (no such
flavor or VM).`,
		Example: `  prewarm-pool serve --config /etc/prewarm/pool.yaml
  prewarm-pool claim small --config web-1.json --network tenant-a
  prewarm-pool status
  prewarm-pool release pw-small-0a1b2c`,
	}
	cli.AddGroups(root, "admin socket", []*cobra.Command{serveCmd()}, []*cobra.Command{claimCmd(), statusCmd(), releaseCmd()})
	cli.Setup(root, envPrefix, version)
	return root
}
