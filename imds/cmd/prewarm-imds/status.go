package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// failedError is the exit-3 error of a failed report: its error and the
// failed steps' errors as the detail.
func failedError(id string, r *status.Report) *cli.Error {
	e := cli.Errorf(cli.ExitGuestFailed, "%s reported failed for generation %d (report %d at %s)", id, r.Generation, r.Seq, r.Time.UTC().Format(status.TimeFormat))
	e.Detail = r.FailureDetail()
	e.Hint = "fix the document and publish it again; the agent retries with the next generation"
	return e
}

func statusCmd() *cobra.Command {
	var (
		wait      bool
		until     string
		gen       int64
		published bool
		after     uint64
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show an instance's status reports, or wait for a state",
		Long: `status prints instance ID's status reports, oldest first (with --after SEQ,
only those after it).

With --wait it waits, like 'cloud-init status --wait', until the instance
reaches the state of --until at the generation of --generation N or, by
default (--published), the generation published when the wait starts (or
a later one):

  provisioned    a final document is applied (default)
  partial-ready  a partial document is applied (provisioned counts too)
  failed         the agent reported failed
  any            the next report, whatever it says (after --after SEQ, by
                 default the newest report when the wait starts)

A report already there counts (except for any). The wait ends with exit 0
when the state is reached, 3 (its error printed) when the guest reports
failed instead, 4 when --timeout runs out (default: no limit), 6 when the
instance is not registered or nothing is published. It prints the reports
that arrived, ending with the one that decided.`,
		Example: `  prewarm-imds status vm-1
  prewarm-imds status vm-1 --wait --until provisioned --timeout 2m
  prewarm-imds status vm-1 --wait --until partial-ready --generation 1
  prewarm-imds status vm-1 --wait --until any --after 7 -o json`,
		Args: cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	out := cli.AddOutputFlag(cmd)
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "wait until the instance reaches the --until state")
	f.StringVar(&until, "until", cli.UntilProvisioned, "with --wait: provisioned, partial-ready, failed or any")
	f.Int64Var(&gen, "generation", 0, "with --wait: the generation the state must be reached at (or later)")
	f.BoolVar(&published, "published", false, "with --wait: the generation published when the wait starts (the default)")
	f.Uint64Var(&after, "after", 0, "only reports with seq above this (with --wait: --until any waits for one)")
	f.DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long, exit 4 (0: no limit)")
	cmd.RegisterFlagCompletionFunc("until", cobra.FixedCompletions(cli.UntilValues, cobra.ShellCompDirectiveNoFileComp))
	cmd.MarkFlagsMutuallyExclusive("generation", "published")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if err := cli.CheckWait(f, wait, until, gen, timeout, "until", "generation", "published", "timeout"); err != nil {
			return err
		}
		if published && cli.Typed(f, "published") && !cli.Typed(f, "generation") {
			gen = 0 // --published on the command line wins over a generation from the environment or file
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		if !wait {
			ctx, cancel := a.ctx()
			defer cancel()
			h, err := c.Status(ctx, id, after, false, 0)
			if err != nil {
				return a.explain(err, "status of "+id)
			}
			return printReports(cmd.OutOrStdout(), out, h)
		}
		ctx, stop := commandContext()
		defer stop()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		h, werr := waitStatus(ctx, c, a, id, until, gen, after, f.Changed("after"), timeout)
		if h != nil && len(h.Reports) > 0 {
			if err := printReports(cmd.OutOrStdout(), out, h); err != nil {
				return err
			}
		}
		return werr
	}
	return cmd
}

// waitStatus waits as status --wait does and returns the reports that
// arrived (ending with the deciding one) and the error of the exit code.
func waitStatus(ctx context.Context, c *client.Client, a *adminFlags, id, until string, gen int64, after uint64, afterSet bool, timeout time.Duration) (*api.StatusHistory, error) {
	h := &api.StatusHistory{InstanceID: id, Reports: []status.Report{}}
	rctx, cancel := context.WithTimeout(ctx, a.requestTimeout)
	inst, err := c.Instance(rctx, id)
	cancel()
	if err != nil {
		return nil, a.explainWait(err, id, timeout)
	}
	w := cli.Wait{Until: until, Generation: gen}
	if until != cli.UntilAny && gen == 0 {
		if inst.Generation == 0 {
			return nil, cli.Errorf(cli.ExitNotFound, "%s has no config published, so it cannot reach %s", id, until).
				WithHint("publish a document first ('prewarm-imds publish %s FILE'), or wait with --generation N or --until any", id)
		}
		w.Generation = inst.Generation
	}
	if !afterSet && inst.LastStatus != nil {
		after = inst.LastStatus.Seq
		if until != cli.UntilAny {
			if done, code := w.Decide(inst.LastStatus.State, inst.LastStatus.Generation); done {
				h.Reports = append(h.Reports, *inst.LastStatus)
				return h, exitFor(code, id, inst.LastStatus)
			}
		}
	}
	last := inst.LastStatus
	for {
		poll := api.MaxWaitSeconds * time.Second
		if dl, ok := ctx.Deadline(); ok {
			poll = min(poll, time.Until(dl).Truncate(time.Second))
		}
		if poll < time.Second {
			return h, timedOut(id, w, timeout, last)
		}
		page, err := c.Status(ctx, id, after, true, poll)
		switch {
		case errors.Is(err, client.ErrNotModified):
			continue
		case err != nil && ctx.Err() == context.DeadlineExceeded:
			return h, timedOut(id, w, timeout, last)
		case err != nil:
			return h, a.explainWait(err, id, timeout)
		}
		for i := range page.Reports {
			r := &page.Reports[i]
			h.Reports = append(h.Reports, *r)
			after, last = r.Seq, r
			if done, code := w.Decide(r.State, r.Generation); done {
				return h, exitFor(code, id, r)
			}
		}
	}
}

func exitFor(code int, id string, r *status.Report) error {
	if code == cli.ExitGuestFailed {
		return failedError(id, r)
	}
	return nil
}

func timedOut(id string, w cli.Wait, timeout time.Duration, last *status.Report) error {
	e := cli.Errorf(cli.ExitTimeout, "%s did not report %v within %s", id, w, timeout)
	if last != nil {
		e.Detail = fmt.Sprintf("its last report: generation %d %s (report %d at %s)", last.Generation, last.State, last.Seq, last.Time.UTC().Format(status.TimeFormat))
	} else {
		e.Detail = "it has not reported at all: is its agent running and can it reach the IMDS?"
	}
	e.Hint = fmt.Sprintf("wait longer with --timeout; 'prewarm-imds status %s' lists its reports", id)
	return e
}

func (a *adminFlags) explainWait(err error, id string, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
		return cli.Errorf(cli.ExitTimeout, "status of %s: the wait ran out (--timeout %s) before the IMDS answered", id, timeout)
	}
	return a.explain(err, "status of "+id)
}

// printReports prints a status history: the admin API's object, or a
// table, one report a row.
func printReports(w io.Writer, out *cli.Output, h *api.StatusHistory) error {
	if out.JSON() {
		return cli.WriteJSON(w, h)
	}
	rows := make([][]string, 0, len(h.Reports))
	for _, r := range h.Reports {
		var steps []string
		for _, s := range r.Steps {
			st := "ok"
			if !s.OK {
				st = "FAILED"
			}
			steps = append(steps, fmt.Sprintf("%s %s %dms", s.Name, st, s.MS))
		}
		rows = append(rows, []string{strconv.FormatUint(r.Seq, 10), r.Time.UTC().Format(status.TimeFormat),
			strconv.FormatInt(r.Generation, 10), stateCell(&r), r.Event, strings.Join(steps, ", "), r.Error})
	}
	if err := cli.Table(w, []string{"SEQ", "TIME", "GENERATION", "STATE", "EVENT", "STEPS", "ERROR"}, rows); err != nil {
		return err
	}
	printHostKeys(w, h)
	printLinkEvents(w, h)
	return nil
}
