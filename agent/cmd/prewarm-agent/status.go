package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

func statusCmd() *cobra.Command {
	var (
		follow, wait   bool
		until          string
		gen            int64
		after          uint64
		timeout        time.Duration
		logDir, runDir string
	)
	d := defaultDirs()
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the agent's current status, follow its reports, or wait for a state",
		Long: `status prints the agent's current report (` + agent.StatusCurrentFile + ` in --run-dir).
--follow streams the status log (` + agent.StatusLogFile + ` in --log-dir) as it grows.

With --wait it waits, like 'cloud-init status --wait', until the agent
reports the state of --until (at --generation N or later; by default any
generation):

  provisioned    a final document is applied (default)
  partial-ready  a partial document is applied (provisioned counts too)
  failed         the agent reported failed
  any            the next report, whatever it says (after --after SEQ, by
                 default the report there when the wait starts)

A report already there counts (except for any); the wait also covers an
agent that has not started yet. Exit 0 when the state is reached, 3 (its
error printed) when the agent reports failed instead, 4 when --timeout runs
out (default: no limit); without --wait, 5 when there is no status yet.`,
		Example: `  prewarm-agent status
  prewarm-agent status -o json
  prewarm-agent status --wait --until provisioned --timeout 5m
  prewarm-agent status --follow`,
		Args: cli.NoArgs,
	}
	out := cli.AddOutputFlag(cmd)
	f := cmd.Flags()
	f.BoolVar(&follow, "follow", false, "stream new reports as they are written")
	f.BoolVar(&wait, "wait", false, "wait until the agent reports the --until state")
	f.StringVar(&until, "until", cli.UntilProvisioned, "with --wait: provisioned, partial-ready, failed or any")
	f.Int64Var(&gen, "generation", 0, "with --wait: the generation the state must be reached at, or later (0: any)")
	f.Uint64Var(&after, "after", 0, "with --wait: only reports with seq above this count (--until any: default, the report there when the wait starts)")
	f.DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long, exit 4 (0: no limit)")
	f.StringVar(&logDir, "log-dir", d.log, "directory of the status log")
	f.StringVar(&runDir, "run-dir", d.run, "directory of the current status")
	cmd.RegisterFlagCompletionFunc("until", cobra.FixedCompletions(cli.UntilValues, cobra.ShellCompDirectiveNoFileComp))
	cmd.MarkFlagsMutuallyExclusive("follow", "wait")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		w := cmd.OutOrStdout()
		if err := cli.CheckWait(f, wait, until, gen, timeout, "until", "generation", "timeout", "after"); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		switch {
		case follow:
			return agent.FollowStatus(ctx, w, logDir, out.JSON())
		case !wait:
			err := agent.PrintStatus(w, runDir, out.JSON())
			if errors.Is(err, agent.ErrNoStatus) {
				return cli.Errorf(cli.ExitUnreachable, "%v", err).
					WithHint("is prewarm-agent running (systemctl status prewarm-agent)? 'prewarm-agent status --wait' waits for its first report")
			}
			return err
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		spec := cli.Wait{Until: until, Generation: gen}
		code := 0
		afterSet := f.Changed("after")
		// The report there when the wait starts, if any: --until any
		// waits for the next one (unless --after says which). Read
		// before the wait, so that when there is none yet the agent's
		// first report is the next one, not skipped as the current.
		var first *status.Report
		if spec.Until == cli.UntilAny && !afterSet {
			if b, err := os.ReadFile(filepath.Join(runDir, agent.StatusCurrentFile)); err == nil {
				var cur status.Report
				if json.Unmarshal(b, &cur) == nil {
					first = &cur
				}
			}
		}
		r, err := agent.WaitStatus(ctx, runDir, func(r *status.Report) bool {
			if afterSet && r.Seq <= after {
				return false
			}
			if first != nil && r.Seq == first.Seq && r.Time.Equal(first.Time.Time) {
				return false
			}
			done, c := spec.Decide(r.State, r.Generation)
			code = c
			return done
		})
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			e := cli.Errorf(cli.ExitTimeout, "the agent did not report %v within %s", spec, timeout)
			if r != nil {
				e.Detail = fmt.Sprintf("its last report: generation %d %s (report %d at %s)", r.Generation, r.State, r.Seq, r.Time.UTC().Format(status.TimeFormat))
			} else {
				e.Detail = "it has not reported at all: is prewarm-agent running?"
			}
			return e.WithHint("wait longer with --timeout; 'prewarm-agent status --follow' shows its reports as they come")
		case errors.Is(err, context.Canceled):
			return cli.Errorf(cli.ExitFailure, "interrupted while waiting for %v", spec)
		case err != nil:
			return err
		}
		if out.JSON() {
			if err := cli.WriteJSON(w, r); err != nil {
				return err
			}
		} else if err := agent.WriteReport(w, r); err != nil {
			return err
		}
		if code == cli.ExitGuestFailed {
			e := cli.Errorf(cli.ExitGuestFailed, "the config of generation %d failed to apply", r.Generation)
			e.Detail = r.FailureDetail()
			return e.WithHint("the agent retries with the next generation its host publishes; 'prewarm-agent status --follow' shows it")
		}
		return nil
	}
	return cmd
}
