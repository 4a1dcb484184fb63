package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/cli"
)

// storeCmd is "store check" and "store recover" on the embedded store of
// --data-dir. Neither needs the service; recover must not run while it
// serves that store (a store in use fails the check's open).
func storeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Verify (check) or salvage (recover) the embedded store",
		Long: `store check verifies the embedded store of --data-dir: exit 0 when it is
healthy, 1 when it is damaged, 6 when there is no store, 1 when it cannot
be read (in use by a running service, permission).

store recover salvages a damaged store into a new one with a new epoch
(every agent re-reads its document), keeping the damaged file beside it.
A damaged status reports file (reports.db) is moved aside and made anew
at the next start: the status histories are lost, the store is kept.`,
		Example: `  prewarm-imds store check --data-dir /var/lib/prewarm-imds
  systemctl stop prewarm-imds && prewarm-imds store recover`,
		Args: cli.NoArgs,
	}
	for _, sub := range []string{"check", "recover"} {
		c := &cobra.Command{Use: sub, Args: cli.NoArgs}
		dataDir := c.Flags().String("data-dir", "/var/lib/prewarm-imds", "directory of the embedded store")
		var force *bool
		if sub == "recover" {
			c.Short = "Salvage a damaged store into a new one (new epoch), keeping the damaged file"
			force = c.Flags().Bool("force", false, "rebuild a store that checks healthy too (it gets a new epoch: every agent re-reads)")
		} else {
			c.Short = "Verify the embedded store (exit 0 ok, 1 damaged, 6 no store)"
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			return storeRun(sub, *dataDir, force, cmd.OutOrStdout())
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func storeRun(sub, dataDir string, force *bool, stdout io.Writer) error {
	if sub == "check" {
		sum, err := store.CheckBolt(dataDir)
		var de *store.DamagedError
		switch {
		case errors.As(err, &de):
			return cli.Errorf(cli.ExitFailure, "%v", err).WithHint("stop the service and run 'prewarm-imds store recover --data-dir %s'", dataDir)
		case errors.Is(err, fs.ErrNotExist):
			return cli.Errorf(cli.ExitNotFound, "%v", err).WithHint("no store in %s: the service makes one at its first start", dataDir)
		case err != nil:
			return cli.Errorf(cli.ExitFailure, "%v", err)
		}
		epoch := sum.Epoch
		if epoch == "" {
			epoch = "none yet (made at the next start)"
		}
		fmt.Fprintf(stdout, "store %s: ok: %d instances, epoch %s, %d bytes\n", sum.Path, sum.Instances, epoch, sum.Bytes)
		if sum.ReportsPath != "" {
			fmt.Fprintf(stdout, "status reports %s: ok: %d bytes\n", sum.ReportsPath, sum.ReportsBytes)
		} else {
			fmt.Fprintf(stdout, "status reports: none yet (made at the next start)\n")
		}
		return nil
	}
	res, err := store.RecoverBolt(dataDir, *force)
	if err != nil {
		return err
	}
	if res.Rebuilt {
		fmt.Fprintf(stdout, "recovered store %s: %d instances, new epoch %s (every agent re-reads its document)\n", res.Path, res.Instances, res.Epoch)
		fmt.Fprintf(stdout, "the damaged file is kept as %s\n", res.DamagedPath)
	} else {
		fmt.Fprintf(stdout, "store %s: not damaged, kept as it is: %d instances, epoch %s\n", res.Path, res.Instances, res.Epoch)
	}
	if res.ReportsDamagedPath != "" {
		fmt.Fprintf(stdout, "the damaged status reports file is kept as %s; a new, empty one is made at the next start (status histories start again)\n", res.ReportsDamagedPath)
	}
	if len(res.Scanned) > 0 {
		fmt.Fprintf(stdout, "found only by scanning pages (check each is still meant to exist; delete it if not): %s\n", strings.Join(res.Scanned, ", "))
	}
	if len(res.Cut) > 0 {
		fmt.Fprintf(stdout, "not recovered, their status reports in %s are dead for good (registered again, an id starts a new history): %s\n", store.ReportsFileName, strings.Join(res.Cut, ", "))
	}
	if len(res.Lost) > 0 {
		fmt.Fprintf(stdout, "could not be read (%d):\n", len(res.Lost))
		for _, l := range res.Lost {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return nil
}
