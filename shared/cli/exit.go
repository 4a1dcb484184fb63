package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, the same in every Prewarm binary (docs/cli.md).
const (
	ExitOK          = 0 // success; the awaited state was reached
	ExitFailure     = 1 // any other failure
	ExitUsage       = 2 // bad command line: unknown command or flag, bad value, wrong arguments
	ExitGuestFailed = 3 // the guest reported failed (its error is printed)
	ExitTimeout     = 4 // a wait ran out of time
	ExitUnreachable = 5 // the service (IMDS admin API, pool controller, agent) cannot be reached
	ExitNotFound    = 6 // the instance (or other named object) does not exist
	ExitLocked      = 7 // prewarm-agent run: another agent holds the state dir's lock
)

// Error is an error with its exit code and, optionally, a hint: what the
// user can do about it. Its message says what failed, in one line, without
// the chain of Go errors that led to it.
type Error struct {
	Code int
	Msg  string
	Hint string
	// Detail, when set, is printed after the message: the guest's error of
	// a failed report, the field errors of a rejected document.
	Detail string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// WithHint sets e's hint and returns e.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// Usagef returns a usage error (exit 2).
func Usagef(format string, args ...any) *Error { return Errorf(ExitUsage, format, args...) }

// Code returns the exit code err calls for: 0 for nil, an *Error's code,
// else ExitFailure.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}

const (
	annEnvPrefix = "prewarm.cli/env-prefix"
	annConfig    = "prewarm.cli/config-file"
)

// Setup applies the shared conventions to root, whose subcommands must be
// added already: envPrefix (for example "PREWARM_IMDS_") names the
// environment variables that set flags; version is the program's release
// version (version command and --version). Call Execute to run it.
func Setup(root *cobra.Command, envPrefix, version string) {
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[annEnvPrefix] = envPrefix
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &Error{Code: ExitUsage, Msg: err.Error(), Hint: fmt.Sprintf("run '%s --help' for usage", c.CommandPath())}
	})
	addVersion(root, version)
	for _, m := range extraCommands {
		root.AddCommand(m())
	}
	wrap(root)
}

// wrap makes every runnable command of the tree apply the environment and
// the config file before it runs, and marks an error as the command's own
// (exit 1 unless it carries a code); an error cobra makes before a command
// runs is a usage error.
func wrap(c *cobra.Command) {
	for _, sub := range c.Commands() {
		wrap(sub)
	}
	if c.RunE == nil && c.Run == nil {
		if c.HasSubCommands() {
			// A command of commands: without one it is a usage error
			// (cobra would print the help and exit 0).
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return &Error{Code: ExitUsage, Msg: fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath()),
						Hint: fmt.Sprintf("run '%s --help' for its commands", cmd.CommandPath())}
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				var names []string
				for _, sub := range cmd.Commands() {
					if sub.IsAvailableCommand() && sub.Name() != "help" && sub.Name() != "completion" {
						names = append(names, sub.Name())
					}
				}
				what := cmd.CommandPath() + " wants a command"
				if !cmd.HasParent() {
					what = "no command given"
				}
				return &Error{Code: ExitUsage, Msg: fmt.Sprintf("%s: %s", what, strings.Join(names, ", ")),
					Hint: fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())}
			}
		}
		return
	}
	run, runE := c.Run, c.RunE
	c.Run = nil
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := applyEnvAndFile(cmd); err != nil {
			return err
		}
		var err error
		if runE != nil {
			err = runE(cmd, args)
		} else {
			run(cmd, args)
		}
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return &Error{Code: ExitFailure, Msg: err.Error()}
	}
}

// Execute runs root with args and returns the exit code, printing an
// error as "<program>: <what failed>" with its detail and hint on the
// lines after.
func Execute(root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	var e *Error
	if !errors.As(err, &e) {
		// cobra's own: unknown command, wrong number of arguments.
		path := root.Name()
		if cmd != nil {
			path = cmd.CommandPath()
		}
		e = &Error{Code: ExitUsage, Msg: err.Error(), Hint: fmt.Sprintf("run '%s --help' for usage", path)}
	}
	// The message and detail may carry a guest's text (its error):
	// printed through Printable, line by line.
	fmt.Fprintf(stderr, "%s: %s\n", root.Name(), Printable(e.Msg))
	if e.Detail != "" {
		for l := range strings.SplitSeq(strings.TrimRight(e.Detail, "\n"), "\n") {
			fmt.Fprintf(stderr, "  %s\n", Printable(l))
		}
	}
	if e.Hint != "" {
		fmt.Fprintf(stderr, "hint: %s\n", Printable(e.Hint))
	}
	return e.Code
}

// Main is Execute on the process's arguments and standard streams.
func Main(root *cobra.Command) int {
	return Execute(root, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// ExactArgs is cobra.ExactArgs naming the arguments wanted (usage:
// "ID FILE") in its error.
func ExactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &Error{Code: ExitUsage, Msg: fmt.Sprintf("%s wants %s (%d argument(s)), got %d", cmd.Name(), names, n, len(args)),
				Hint: fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())}
		}
		return nil
	}
}

// NoArgs is cobra.NoArgs with a usage error.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &Error{Code: ExitUsage, Msg: fmt.Sprintf("%s takes no arguments, got %q", cmd.Name(), args),
			Hint: fmt.Sprintf("run '%s --help' for usage", cmd.CommandPath())}
	}
	return nil
}

// extraCommands are added to every root by Setup (gen-man, with -tags man).
var extraCommands []func() *cobra.Command
