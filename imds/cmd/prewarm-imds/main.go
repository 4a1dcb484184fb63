// Command prewarm-imds is the Prewarm host metadata service and its admin
// CLI.
//
//	prewarm-imds serve [--config FILE] [flags]       run the service
//	prewarm-imds register ID --address IP [--host-interface DEV] [--label K=V]
//	prewarm-imds publish ID FILE|- [--if-match GEN] prints the generation
//	prewarm-imds status ID [--wait --until STATE [--generation N|--published] [--timeout D]]
//	prewarm-imds list [--state S] [--stale D] [--watch]
//	prewarm-imds get ID | config ID | delete ID
//	prewarm-imds known-hosts ID [--host NAME_OR_IP]   known_hosts lines of its SSH host keys
//	prewarm-imds store check|recover [--data-dir DIR]  verify or salvage the embedded store
//	prewarm-imds version | completion SHELL
//
// The read commands take --output table|json. The CLI talks to the admin
// API on --admin-socket (default /run/prewarm/imds-admin.sock) or, with
// --admin-url, over TCP with the bearer token of --admin-token-file. Every
// flag can also come from PREWARM_IMDS_<FLAG>; exit codes and the JSON
// forms are in docs/cli.md.
package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/shared/cli"
)

// version is the release version; release builds set it with -ldflags
// "-X main.version=..." as they set the agent's agent.Version.
var version = "0.1.0"

// envPrefix names the environment variables that set flags.
const envPrefix = "PREWARM_IMDS_"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		// Here, not in serve's RunE: the process's collector is the
		// service's, and tests run serve in their own process.
		tuneGC(os.LookupEnv)
	}
	os.Exit(cli.Main(rootFor(os.Args[1:])))
}

// run runs the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Execute(rootFor(args), args, stdin, stdout, stderr)
}

// rootFor is the command tree that runs args: for serve, serve's alone
// (the service does not build every admin command's flags, issue 15).
func rootFor(args []string) *cobra.Command {
	if len(args) > 0 && args[0] == "serve" {
		return newServeRoot()
	}
	return newRoot()
}

func newRoot() *cobra.Command {
	root := rootCmd()
	cli.AddGroups(root, "admin API", []*cobra.Command{serveCmd(), storeCmd()}, adminCmds())
	cli.Setup(root, envPrefix, version)
	return root
}

// newServeRoot is newRoot with serve alone.
func newServeRoot() *cobra.Command {
	root := rootCmd()
	cli.AddGroups(root, "admin API", []*cobra.Command{serveCmd()}, nil)
	cli.Setup(root, envPrefix, version)
	return root
}

func rootCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "prewarm-imds",
		Short: "Prewarm host metadata service (IMDS) and its admin CLI",
		Long: `prewarm-imds serves each guest VM its configuration document and collects
the guests' status reports (serve). The other commands drive a running
service over its admin API: register instances, publish documents, await
and list their states.

Every flag can also be set by an environment variable PREWARM_IMDS_<FLAG>
(--admin-socket: PREWARM_IMDS_ADMIN_SOCKET); a flag on the command line
wins over the environment, which wins over serve's --config file.

Exit codes: 0 success, 1 other failure, 2 usage error, 3 the guest reported
failed, 4 timeout, 5 the service is unreachable, 6 not found.`,
		Example: `  prewarm-imds register vm-1 --host-interface vnet7
  echo '{"hostname": "web-1"}' | prewarm-imds publish vm-1 -
  prewarm-imds status vm-1 --wait --until provisioned --timeout 2m
  prewarm-imds list --state failed
  prewarm-imds list --watch`,
	}
}
