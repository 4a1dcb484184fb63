// Command prewarm-agent is the Prewarm guest agent: it fetches the VM's
// config from the IMDS, applies it, and reports back (PROTOCOL.md).
//
//	prewarm-agent run [flags]                run in the foreground (systemd, debugging)
//	prewarm-agent install|uninstall [flags]  register/remove the OS service
//	prewarm-agent start|stop                 start/stop the OS service
//	prewarm-agent status [--json] [--follow] show the current status
//	prewarm-agent version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/shared/status"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: prewarm-agent <command> [flags]

commands:
  run         run the agent in the foreground
  install     install the agent as a service (flags as for run)
  uninstall   remove the service
  start       start the service
  stop        stop the service
  status      print the current status [--json] [--follow]
  version     print the version

exit status:
  0  done (run: stopped by a signal or the service manager)
  1  failed
  2  no command, or an unknown one
  7  run: another prewarm-agent already runs on the state dir (it holds
     <state-dir>/agent.lock); this one started nothing
`

// exitAlreadyRunning is the exit status of a run that found another agent
// holding the state dir's lock. The systemd unit lists it in
// RestartPreventExitStatus: restarting cannot help while the other runs.
const exitAlreadyRunning = 7

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args, stderr)
	case "install", "uninstall", "start", "stop":
		err = cmdService(cmd, args, stderr)
	case "status":
		err = cmdStatus(args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "prewarm-agent %s %s/%s %s\n", agent.Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "prewarm-agent: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, agent.ErrLocked) {
		fmt.Fprintln(stderr, "prewarm-agent:", err)
		return exitAlreadyRunning
	}
	if err != nil {
		fmt.Fprintln(stderr, "prewarm-agent:", err)
		return 1
	}
	return 0
}

// runFlags are the flags of run (and install, which passes them on to the
// service's run).
type runFlags struct {
	imdsURL, stateDir, logDir, runDir, root string
	dhcpClient, interfaces, logFormat       string
	logLevel, platform                      string
	manageUsers                             string
}

// newFlagSet returns a flag set with the run flags bound to f.
func newFlagSet(name string, f *runFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f.register(fs)
	return fs
}

func (f *runFlags) register(fs *flag.FlagSet) {
	d := defaultDirs()
	fs.StringVar(&f.imdsURL, "imds-url", "http://169.254.169.254", "base URL of the IMDS guest API")
	fs.StringVar(&f.stateDir, "state-dir", d.state, "directory of the agent's persisted state")
	fs.StringVar(&f.logDir, "log-dir", d.log, "directory of the status log ("+agent.StatusLogFile+")")
	fs.StringVar(&f.runDir, "run-dir", d.run, "directory of the current status ("+agent.StatusCurrentFile+")")
	fs.StringVar(&f.root, "root", d.root, "target root the platform applies the config under (tests, image builds)")
	fs.StringVar(&f.dhcpClient, "dhcp-client", "", "DHCP client to renew leases with (empty: detect)")
	fs.StringVar(&f.interfaces, "interfaces", "", "comma-separated interfaces to manage (empty: every non-loopback NIC)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.platform, "platform", "auto", "platform: auto (this OS's adapter) or none (every step fails; for benchmarks)")
	fs.StringVar(&f.manageUsers, "manage-existing-users", "", "comma-separated accounts that existed before the agent and that it may manage all the same (never a system account)")
}

// args renders the flags back into arguments for the service definition.
func (f *runFlags) args() []string {
	return []string{"run",
		"--imds-url=" + f.imdsURL, "--state-dir=" + f.stateDir, "--log-dir=" + f.logDir,
		"--run-dir=" + f.runDir, "--root=" + f.root, "--dhcp-client=" + f.dhcpClient,
		"--interfaces=" + f.interfaces, "--log-format=" + f.logFormat, "--log-level=" + f.logLevel,
		"--platform=" + f.platform, "--manage-existing-users=" + f.manageUsers}
}

// changedArgs is args without the flags that hold their defaults: what the
// systemd unit's ExecStart adds to `run`.
func (f *runFlags) changedArgs() []string {
	var d runFlags
	d.register(flag.NewFlagSet("", flag.ContinueOnError))
	all, def := f.args(), d.args()
	out := all[:1:1]
	for i := 1; i < len(all); i++ {
		if all[i] != def[i] {
			out = append(out, all[i])
		}
	}
	return out
}

func (f *runFlags) interfaceList() []string { return splitList(f.interfaces) }

func (f *runFlags) manageUserList() []string { return splitList(f.manageUsers) }

// splitList splits a comma-separated flag, dropping blanks and empties.
func splitList(list string) []string {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func newLogger(format, level string, w io.Writer, red *agent.Redactor) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, o)
	case "json":
		h = slog.NewJSONHandler(w, o)
	default:
		return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
	}
	// The OS's own sinks (the Windows Event Log) sit under the redactor too.
	h, prepErr := osPrepare(h)
	log := slog.New(red.Handler(h))
	if prepErr != nil {
		log.Warn("preparing for the service manager", "err", prepErr)
	}
	return log, nil
}

// newAgent wires the agent from the run flags.
func newAgent(f *runFlags, stderr io.Writer, onReport func()) (*agent.Agent, *slog.Logger, error) {
	red := agent.NewRedactor()
	log, err := newLogger(f.logFormat, f.logLevel, stderr, red)
	if err != nil {
		return nil, nil, err
	}
	var p agent.Platform
	switch f.platform {
	case "auto":
		p, err = newPlatform(f, log) // each platform package names its own component
		if err != nil {
			return nil, nil, fmt.Errorf("platform: %w", err)
		}
	case "none":
		p = agent.Unsupported()
	default:
		return nil, nil, fmt.Errorf("--platform: %q is neither auto nor none", f.platform)
	}
	a, err := agent.New(agent.Options{
		IMDSURL:  f.imdsURL,
		StateDir: f.stateDir,
		LogDir:   f.logDir,
		RunDir:   f.runDir,
		Platform: p,
		Logger:   log.With("component", "agent"),
		Redactor: red,
		OnReport: func(status.Report) { onReport() },
	})
	return a, log, err
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := defaultDirs()
	asJSON := fs.Bool("json", false, "print the raw report")
	follow := fs.Bool("follow", false, "stream new reports as they are written")
	logDir := fs.String("log-dir", d.log, "directory of the status log")
	runDir := fs.String("run-dir", d.run, "directory of the current status")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*follow {
		return agent.PrintStatus(stdout, *runDir, *asJSON)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.FollowStatus(ctx, stdout, *logDir, *asJSON)
}
