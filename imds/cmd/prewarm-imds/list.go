package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// stateNone is the --state of an instance that has not reported.
const stateNone = "none"

// listColumns are the table's columns.
var listColumns = []string{"INSTANCE", "IDENTITY", "PUBLISHED", "REPORTED", "STATE", "LAST REPORT", "LAST ERROR"}

// maxErrorCell is how much of a report's error the table shows.
const maxErrorCell = 60

// row is one instance as the table shows it.
type row struct {
	ID, Identity, Published, Reported, State, LastReport, LastError string
}

func (r row) cells() []string {
	return []string{r.ID, r.Identity, r.Published, r.Reported, r.State, r.LastReport, r.LastError}
}

// listRow renders inst at time now.
func listRow(inst api.Instance, now time.Time) row {
	ident := inst.HostInterface
	if len(inst.Addresses) > 0 {
		if ident != "" {
			ident += " "
		}
		ident += strings.Join(inst.Addresses, ",")
	}
	r := row{ID: inst.ID, Identity: ident, Published: strconv.FormatInt(inst.Generation, 10), State: stateNone}
	if inst.Generation == 0 {
		r.Published = "-"
	}
	if s := inst.LastStatus; s != nil {
		r.Reported = strconv.FormatInt(s.Generation, 10)
		r.State = s.State
		seen := s.Time.Time // the guest's clock: only when the IMDS gives no receive time
		if inst.LastSeen != nil {
			seen = *inst.LastSeen
		}
		r.LastReport = age(now.Sub(seen))
		r.LastError = s.Error
		if utf8.RuneCountInString(r.LastError) > maxErrorCell {
			r.LastError = string([]rune(r.LastError)[:maxErrorCell-1]) + "…"
		}
	}
	return r
}

// age renders d as kubectl does: 45s, 3m, 5h, 2d ago.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// listFilter is list's --state and --stale.
type listFilter struct {
	states []string
	stale  time.Duration
}

// keep says whether inst passes the filter at time now: its reported state
// (none before its first report) is one of states, and with stale, it is
// stale for that long.
func (f listFilter) keep(inst api.Instance, now time.Time) bool {
	st := stateNone
	if inst.LastStatus != nil {
		st = inst.LastStatus.State
	}
	if len(f.states) > 0 && !slices.Contains(f.states, st) {
		return false
	}
	return f.stale <= 0 || stale(inst, f.stale, now)
}

// stale reports whether inst's guest has not settled on its published
// generation (reported partial-ready, provisioned or failed for it or a
// later one) and has not reported for d, or never. An instance with
// nothing published, or settled, is never stale: an agent with nothing to
// do sends nothing. The silence counts from the later of the last report
// and the publish, in the IMDS's clock (lastSeen, publishedAt) when the
// IMDS gives it, as its stale gauge and fleet page count.
func stale(inst api.Instance, d time.Duration, now time.Time) bool {
	if inst.Generation <= 0 {
		return false
	}
	var since time.Time
	if inst.PublishedAt != nil {
		since = *inst.PublishedAt
	}
	if r := inst.LastStatus; r != nil {
		if r.Generation >= inst.Generation {
			switch r.State {
			case status.StatePartialReady, status.StateProvisioned, status.StateFailed:
				return false
			}
		}
		seen := r.Time.Time
		if inst.LastSeen != nil {
			seen = *inst.LastSeen
		}
		if seen.After(since) {
			since = seen
		}
	}
	return since.IsZero() || now.Sub(since) > d
}

func (f listFilter) apply(l []api.Instance, now time.Time) []api.Instance {
	out := []api.Instance{}
	for _, in := range l {
		if f.keep(in, now) {
			out = append(out, in)
		}
	}
	return out
}

func listCmd() *cobra.Command {
	var (
		f     listFilter
		watch bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the instances: identity, published and reported generation, state, last report",
		Long: `list shows every registered instance: its identity (host interface and
addresses), the published generation, the generation and state of its last
report, how long ago the IMDS received it (the host's clock) and its error.

--state keeps the instances in the given states (none: never reported);
--stale D keeps the stuck ones: a document is published that the guest has
not settled on (reported partial-ready, provisioned or failed for it), silent
for D since the later of the publish and its last report. --watch prints the
list again whenever it changes (the admin
API's long-poll on the list, not a timer) until interrupted.`,
		Example: `  prewarm-imds list
  prewarm-imds list --state failed,applying
  prewarm-imds list --stale 10m
  prewarm-imds list --watch
  prewarm-imds list -o json`,
		Args: cli.NoArgs,
	}
	a := addAdminFlags(cmd)
	out := cli.AddOutputFlag(cmd)
	cmd.Flags().StringSliceVar(&f.states, "state", nil, "only instances in these reported states (comma separated; none: never reported)")
	cmd.Flags().DurationVar(&f.stale, "stale", 0, "only instances not settled on their published generation whose last report is older than this (or that never reported)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "print the list again whenever it changes")
	cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions([]string{stateNone, status.StateStarting, status.StateWaiting,
		status.StateApplying, status.StatePartialReady, status.StateProvisioned, status.StateFailed}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		for _, s := range f.states {
			if s != stateNone && !status.ValidState(s) {
				return cli.Usagef("--state %q: want none, starting, waiting, applying, partial-ready, provisioned or failed", s)
			}
		}
		if f.stale < 0 {
			return cli.Usagef("--stale %s: must not be negative", f.stale)
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if !watch {
			ctx, cancel := a.ctx()
			defer cancel()
			l, _, err := c.InstanceList(ctx, "", false, 0)
			if err != nil {
				return a.explain(err, "list")
			}
			return printList(w, out, f, l.Instances, time.Now())
		}
		return watchList(cmd, c, a, out, f)
	}
	return cmd
}

// watchList prints the list, then again after every change, until
// interrupted: a terminal is cleared first, anything else gets the lists
// one after another.
func watchList(cmd *cobra.Command, c *client.Client, a *adminFlags, out *cli.Output, f listFilter) error {
	ctx, stop := commandContext()
	defer stop()
	w := cmd.OutOrStdout()
	tty := isTerminal(w)
	var etag string
	for first := true; ; first = false {
		l, tag, err := c.InstanceList(ctx, etag, !first, api.MaxWaitSeconds*time.Second)
		switch {
		case errors.Is(err, client.ErrNotModified):
			continue
		case err != nil && ctx.Err() != nil:
			return nil // interrupted: the watch is over
		case err != nil:
			return a.explain(err, "list --watch")
		}
		if tag == "" {
			return cli.Errorf(cli.ExitFailure, "this IMDS cannot be watched: its list answer has no entity tag (an older prewarm-imds)").
				WithHint("run 'prewarm-imds list' without --watch, or upgrade the service")
		}
		etag = tag
		now := time.Now()
		if !out.JSON() {
			if tty {
				io.WriteString(w, "\x1b[H\x1b[2J")
			} else if !first {
				io.WriteString(w, "\n")
			}
			fmt.Fprintf(w, "%s  (redrawn on every change; Ctrl-C ends)\n", now.UTC().Format("2006-01-02 15:04:05Z"))
		}
		if err := printList(w, out, f, l.Instances, now); err != nil {
			return err
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printList prints the instances f keeps: the admin API's list object, or
// the table.
func printList(w io.Writer, out *cli.Output, f listFilter, l []api.Instance, now time.Time) error {
	l = f.apply(l, now)
	if out.JSON() {
		return cli.WriteJSON(w, api.InstanceList{Instances: l})
	}
	rows := make([][]string, len(l))
	for i, in := range l {
		rows[i] = listRow(in, now).cells()
	}
	return cli.Table(w, listColumns, rows)
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}
