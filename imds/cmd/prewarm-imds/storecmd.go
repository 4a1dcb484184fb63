package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/prewarm/prewarm/imds/store"
)

// Exit statuses of "store check" besides 0 (healthy) and 2 (usage).
const (
	exitDamaged    = 1 // the store is damaged
	exitCannotOpen = 3 // no store, or it could not be read (in use, permission)
)

// exitError carries a command's exit status with its error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// storeCmd runs "store check" or "store recover" on the embedded store of
// --data-dir. Neither needs the service; recover must not run while it
// serves that store (a store in use fails the check's open).
func storeCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "check" && args[0] != "recover") {
		return fmt.Errorf("%w: want \"store check\" or \"store recover\"", errUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("store "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "/var/lib/prewarm-imds", "directory of the embedded store")
	var force *bool
	if sub == "recover" {
		force = fs.Bool("force", false, "rebuild a store that checks healthy too (it gets a new epoch: every agent re-reads)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if sub == "check" {
		sum, err := store.CheckBolt(*dataDir)
		var de *store.DamagedError
		switch {
		case errors.As(err, &de):
			return &exitError{exitDamaged, err}
		case err != nil:
			return &exitError{exitCannotOpen, err}
		}
		epoch := sum.Epoch
		if epoch == "" {
			epoch = "none yet (made at the next start)"
		}
		fmt.Fprintf(stdout, "store %s: ok: %d instances, epoch %s, %d bytes\n", sum.Path, sum.Instances, epoch, sum.Bytes)
		return nil
	}
	res, err := store.RecoverBolt(*dataDir, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recovered store %s: %d instances, new epoch %s (every agent re-reads its document)\n", res.Path, res.Instances, res.Epoch)
	fmt.Fprintf(stdout, "the damaged file is kept as %s\n", res.DamagedPath)
	if len(res.Scanned) > 0 {
		fmt.Fprintf(stdout, "found only by scanning pages (check each is still meant to exist; delete it if not): %s\n", strings.Join(res.Scanned, ", "))
	}
	if len(res.Lost) > 0 {
		fmt.Fprintf(stdout, "could not be read (%d):\n", len(res.Lost))
		for _, l := range res.Lost {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return nil
}
