package main

import (
	"fmt"
	"io"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/status"
)

// printLinkEvents prints the link events of the newest report of h (every
// report carries the agent's latest ones), one a line, under the table of
// status. They are the guest's text: each line goes through Printable.
func printLinkEvents(w io.Writer, h *api.StatusHistory) {
	var r *status.Report
	for i := len(h.Reports) - 1; i >= 0 && r == nil; i-- {
		if len(h.Reports[i].LinkEvents) > 0 {
			r = &h.Reports[i]
		}
	}
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\nLink events (report %d):\n", r.Seq)
	for _, e := range r.LinkEvents {
		fmt.Fprintf(w, "  %s  %s\n", e.Time.UTC().Format(status.TimeFormat), cli.Printable(e.Summary()))
	}
}

// stateCell is a report's state for the status table, with its attempt
// from the first retry on.
func stateCell(r *status.Report) string {
	if r.Attempt > 1 {
		return fmt.Sprintf("%s (attempt %d)", r.State, r.Attempt)
	}
	return r.State
}
