// Command prewarm-pool keeps warm pools of VMs on libvirt and hands them to
// claims (docs/pool.md).
//
//	prewarm-pool serve --config FILE
//	prewarm-pool claim FLAVOR --config DOC.json [--network NAME] [--claim-id ID] [--ip IP] [--timeout 30s] [--output json]
//	prewarm-pool status [--output json]
//	prewarm-pool release VM
//
// The client commands talk to the controller's admin API on --socket
// (default /run/prewarm/pool.sock).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage: prewarm-pool COMMAND [ARGS] [FLAGS]

commands:
  serve --config FILE          run the controller (config: docs/pool.md)
  claim FLAVOR --config DOC.json [--network NAME] [--claim-id ID] [--ip IP] [--timeout 30s] [--output json]
                               take a warm VM (or boot one cold) with the final document DOC.json
  status [--output json]       per flavor: warm, booting, claimed, failed, last boot time; and every VM
  release VM                   destroy a VM, remove its overlay and reservations, refill

Run "prewarm-pool COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, stderr)
	case "claim":
		err = claim(rest, stdout, stderr)
	case "status":
		err = statusCmd(rest, stdout, stderr)
	case "release":
		err = release(rest, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "prewarm-pool: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "prewarm-pool %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "prewarm-pool %s: %v\n", args[0], err)
		return 1
	}
}

// parseInterleaved parses flags before, between or after the positional
// arguments and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "-" || !strings.HasPrefix(rest[0], "-") {
			pos = append(pos, rest[0])
			args = rest[1:]
			continue
		}
		args = rest
	}
}
