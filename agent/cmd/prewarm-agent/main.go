// Command prewarm-agent is the Prewarm guest agent: it fetches the VM's
// config from the IMDS, applies it, and reports back (PROTOCOL.md).
//
//	prewarm-agent run [--config FILE] [flags] run in the foreground (systemd, debugging)
//	prewarm-agent install|uninstall [flags]   register/remove the OS service
//	prewarm-agent start|stop                  start/stop the OS service
//	prewarm-agent status [--wait --until STATE] [--follow] [-o json]
//	prewarm-agent version | completion SHELL
//
// Flags also come from PREWARM_AGENT_<FLAG> environment variables and, for
// run, a --config file; exit codes are the same as prewarm-imds's
// (docs/cli.md).
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// envPrefix names the environment variables that set flags.
const envPrefix = "PREWARM_AGENT_"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// exitAlreadyRunning is the exit status of a run that found another agent
// holding the state dir's lock (cli.ExitLocked). The systemd unit lists it
// in RestartPreventExitStatus: restarting cannot help while the other runs.
const exitAlreadyRunning = cli.ExitLocked

func realMain(args []string, stdout, stderr io.Writer) int {
	return cli.Execute(newRoot(), args, os.Stdin, stdout, stderr)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "prewarm-agent",
		Short: "Prewarm guest agent: applies the VM's config from the IMDS and reports back",
		Long: `prewarm-agent runs inside the guest. It fetches the VM's config document
from the IMDS, applies it (hostname, time zone, users, network) and reports
each step back to the IMDS and to its status log, which 'prewarm-agent
status' reads.

Every flag can also be set by an environment variable PREWARM_AGENT_<FLAG>
(--imds-url: PREWARM_AGENT_IMDS_URL); a flag on the command line wins over
the environment, which wins over run's --config file.

Exit codes: 0 success, 1 other failure, 2 usage error, 3 the config failed
to apply, 4 timeout, 5 the agent is not running (no status yet), 6 not
found, 7 another agent runs on the state dir.`,
		Example: `  prewarm-agent status
  prewarm-agent status --wait --until provisioned --timeout 5m
  prewarm-agent status --follow
  prewarm-agent run --imds-url http://169.254.169.254 --log-level debug`,
	}
	root.AddCommand(runCmd(), statusCmd())
	for _, a := range []string{"install", "uninstall", "start", "stop"} {
		root.AddCommand(serviceCmd(a))
	}
	cli.Setup(root, envPrefix, agent.Version)
	return root
}

func runCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent in the foreground (as the service manager does)",
		Long: `run runs the agent until SIGINT or SIGTERM, or under the service manager
that started it. A second run on the same state dir exits at once with
status 7.

Settings come from the flags, then PREWARM_AGENT_<FLAG> environment
variables, then the --config file (lines of 'flag-name = value', '#'
comments), then the defaults: docs/cli.md.`,
		Example: `  prewarm-agent run
  prewarm-agent run --config /etc/prewarm/agent.conf
  PREWARM_AGENT_LOG_LEVEL=debug prewarm-agent run --imds-url http://127.0.0.1:8169`,
		Args: cli.NoArgs,
	}
	f.register(cmd.Flags())
	cli.AddConfigFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		err := cmdRun(f, cmd.ErrOrStderr())
		if errors.Is(err, agent.ErrLocked) {
			return cli.Errorf(cli.ExitLocked, "%v", err).WithHint("stop the other agent first (systemctl stop prewarm-agent), or give this one another --state-dir")
		}
		return err
	}
	return cmd
}

func serviceCmd(action string) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:  action,
		Args: cli.NoArgs,
	}
	switch action {
	case "install":
		cmd.Short = "Install the agent as an OS service (with run's flags)"
		cmd.Long = `install registers the agent with the OS service manager (a systemd unit,
a Windows service), its run taking the flags given here. Environment
variables do not apply to install: the service reads its own.`
		cmd.Example = "  prewarm-agent install --imds-url http://169.254.169.254"
		f.register(cmd.Flags())
		cmd.Annotations = map[string]string{cli.AnnotationNoEnv: "true"}
	case "uninstall":
		cmd.Short = "Remove the OS service"
	case "start":
		cmd.Short = "Start the OS service"
	case "stop":
		cmd.Short = "Stop the OS service"
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmdService(action, f, cmd.ErrOrStderr()) }
	return cmd
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
func newFlagSet(name string, f *runFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	f.register(fs)
	return fs
}

func (f *runFlags) register(fs *pflag.FlagSet) {
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
	d.register(pflag.NewFlagSet("", pflag.ContinueOnError))
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
	h, err := cli.LogHandler(w, format, level, "prewarm-agent run")
	if err != nil {
		return nil, err
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
func newAgent(f *runFlags, stderr io.Writer, onReport func(status.Report)) (*agent.Agent, *slog.Logger, error) {
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
		OnReport: onReport,
	})
	return a, log, err
}
