// Command prewarm-imds is the Prewarm host metadata service and its admin
// CLI.
//
//	prewarm-imds serve [flags]                      run the service
//	prewarm-imds register ID --address IP [--host-interface DEV] [--label K=V]
//	prewarm-imds publish ID FILE|- [--if-match GEN] prints the generation
//	prewarm-imds status ID [--wait] [--after SEQ] [--timeout D]
//	prewarm-imds list [--json]
//	prewarm-imds get ID | config ID | delete ID
//	prewarm-imds store check|recover [--data-dir DIR]  verify or salvage the embedded store
//
// The CLI talks to the admin API on --admin-socket (default
// /run/prewarm/imds-admin.sock) or, with --admin-url, over TCP with the
// bearer token of --admin-token-file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage: prewarm-imds COMMAND [ARGS] [FLAGS]

commands:
  serve                        run the metadata service
  register ID --address IP [--address IP ...] [--host-interface DEV] [--label K=V ...]
  publish ID FILE|-            publish a config document; prints its generation
  status ID [--wait] [--after SEQ] [--timeout DURATION]
  list [--json]
  get ID                       show one instance
  config ID                    show the current config (passwords redacted)
  delete ID
  store check [--data-dir DIR]
                               verify the embedded store (exit 0 ok, 1 damaged, 3 cannot read it)
  store recover [--data-dir DIR] [--force]
                               salvage a damaged store into a new one (new epoch), keeping the damaged file

Run "prewarm-imds COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	var ee *exitError
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, stderr)
	case "store":
		err = storeCmd(rest, stdout, stderr)
	case "register", "publish", "status", "list", "get", "config", "delete":
		err = cli(cmd, rest, stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "prewarm-imds: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "prewarm-imds %s: %v\n", args[0], err)
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "prewarm-imds %s: %v\n", args[0], err)
		return ee.code
	default:
		fmt.Fprintf(stderr, "prewarm-imds %s: %v\n", args[0], err)
		return 1
	}
}

var errUsage = errors.New("usage")

// parseInterleaved parses flags that may come before, between or after the
// positional arguments and returns the positional ones.
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

// multiFlag is a repeatable string flag; commas also separate values.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*m = append(*m, p)
		}
	}
	return nil
}
