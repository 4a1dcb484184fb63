package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// lastHostKeys returns the newest report of h that carries SSH host keys,
// or nil.
func lastHostKeys(h *api.StatusHistory) *status.Report {
	for i := len(h.Reports) - 1; i >= 0; i-- {
		if len(h.Reports[i].SSHHostKeys) > 0 {
			return &h.Reports[i]
		}
	}
	return nil
}

// printHostKeys prints the host keys of the newest report of h that has
// them, one key a line, under the table of status. Guest text goes through
// Printable (the IMDS validated the keys, but the operator's terminal
// trusts no guest).
func printHostKeys(w io.Writer, h *api.StatusHistory) {
	r := lastHostKeys(h)
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\nSSH host keys (report %d, generation %d %s):\n", r.Seq, r.Generation, r.State)
	for _, k := range r.SSHHostKeys {
		fmt.Fprintf(w, "  %-22s %s\n", cli.Printable(k.Type), cli.Printable(k.Fingerprint))
	}
}

func knownHostsCmd() *cobra.Command {
	var hosts []string
	cmd := &cobra.Command{
		Use:   "known-hosts ID",
		Short: "Print an instance's SSH host keys as known_hosts lines",
		Long: `known-hosts prints the SSH host keys that instance ID's agent reported (in
its newest partial-ready or provisioned report that carries them) as lines
for ~/.ssh/known_hosts, "HOSTS TYPE KEY", so the first SSH connection to the
instance is verified instead of trusted.

HOSTS is the comma-separated list of --host values (repeatable; a port
other than 22 is written [HOST]:PORT), by default the hostname of the
current config document and the instance's registered addresses.

It fails with exit 6 when the instance is not registered or has reported
no host keys yet (wait for it with 'prewarm-imds status ID --wait').`,
		Example: `  prewarm-imds known-hosts vm-1 >> ~/.ssh/known_hosts
  prewarm-imds known-hosts vm-1 --host web-1.example.com --host 203.0.113.7
  ssh -o UserKnownHostsFile=<(prewarm-imds known-hosts vm-1) -o StrictHostKeyChecking=yes 10.0.0.5`,
		Args: cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "host name or address the lines name (repeatable, or comma separated; default: the document's hostname and the registered addresses)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, " \t\r\n,#") || cli.Printable(h) != h {
				return cli.Usagef("--host %q: must be a host name or address (no blanks, commas or '#')", h)
			}
		}
		var (
			hist *api.StatusHistory
			inst api.Instance
		)
		err := a.call(func(ctx context.Context, c *client.Client) (err error) {
			if inst, err = c.Instance(ctx, id); err != nil {
				return a.explain(err, "known-hosts of "+id)
			}
			if hist, err = c.Status(ctx, id, 0, false, 0); err != nil {
				return a.explain(err, "known-hosts of "+id)
			}
			if len(hosts) == 0 {
				hosts = defaultHosts(ctx, c, inst)
			}
			return nil
		})
		if err != nil {
			return err
		}
		r := lastHostKeys(hist)
		if r == nil {
			return cli.Errorf(cli.ExitNotFound, "%s has reported no SSH host keys", id).
				WithHint("its agent reports them with partial-ready and provisioned: 'prewarm-imds status %s --wait' waits for one", id)
		}
		if len(hosts) == 0 {
			return cli.Usagef("%s has no hostname in its document and no registered address: name the host with --host", id)
		}
		if n := newerOutcome(hist, r); n != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: the keys are from report %d (generation %d %s); generation %d reported %s since, and its keys may differ\n",
				r.Seq, r.Generation, r.State, n.Generation, n.State)
		}
		w := cmd.OutOrStdout()
		for _, k := range r.SSHHostKeys {
			fmt.Fprintln(w, cli.Printable(k.KnownHostsLine(hosts)))
		}
		return nil
	}
	return cmd
}

// defaultHosts are the names a tenant reaches the instance by: the
// hostname of its current document (when it has one) and its registered
// addresses. A document that cannot be read leaves the addresses.
func defaultHosts(ctx context.Context, c *client.Client, inst api.Instance) []string {
	var hosts []string
	if inst.Generation > 0 {
		if d, err := c.GetConfig(ctx, inst.ID); err == nil && d.Hostname != "" {
			hosts = append(hosts, d.Hostname)
		}
	}
	for _, a := range inst.Addresses {
		hosts = append(hosts, strings.ToLower(a))
	}
	return hosts
}

// newerOutcome returns the newest outcome report (partial-ready,
// provisioned or failed) after r in h that carries no keys, or nil: the
// keys printed may predate it (a failed generation may have regenerated
// them before a later step failed).
func newerOutcome(h *api.StatusHistory, r *status.Report) *status.Report {
	for i := len(h.Reports) - 1; i >= 0 && &h.Reports[i] != r; i-- {
		n := &h.Reports[i]
		if n.Event != "" || len(n.SSHHostKeys) > 0 {
			continue
		}
		switch n.State {
		case status.StatePartialReady, status.StateProvisioned, status.StateFailed:
			return n
		}
	}
	return nil
}
