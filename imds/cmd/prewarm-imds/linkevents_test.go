package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// TestStatusLinkEventsAndAttempt: prewarm-imds status lists the newest
// report's link events under the table, the guest's text escaped, and a
// retry's attempt in the state column; the IMDS refuses a report whose
// link events break the contract, naming the field.
func TestStatusLinkEventsAndAttempt(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-1", "--address", "127.0.0.22")
	m.mustCLI(`{"hostname":"web-1"}`, "publish", "vm-1", "-")
	at := status.Time{Time: time.Date(2026, 12, 3, 14, 0, 1, 0, time.UTC)}
	evs := []status.LinkEvent{
		{Time: at, Kind: status.LinkCarrierBack, Interface: "eth0", CarrierChanges: 4},
		{Time: at, Kind: status.LinkRenewed, Interface: "eth0", Client: "dhclient", OldAddresses: []string{"10.77.1.10/24"}, Addresses: []string{"10.78.1.20/24"}, MS: 78},
		{Time: at, Kind: status.LinkRenewed, Interface: "eth\x1b]0;pwned\x07", Client: "udhcpc", Error: "no lease\x1b[2J", MS: 3},
	}
	for _, r := range []status.Report{
		{Generation: 1, State: status.StateApplying, Attempt: 1},
		{Generation: 1, State: status.StateFailed, Attempt: 1, Error: "users: locked"},
		{Generation: 1, State: status.StateApplying, Attempt: 2},
		{Generation: 1, State: status.StateProvisioned, Attempt: 2, LinkEvents: evs},
	} {
		if rec := m.postReport("127.0.0.22", r); rec.Code != http.StatusNoContent {
			t.Fatalf("report %+v: %d %s", r, rec.Code, rec.Body)
		}
	}
	table := m.mustCLI("", "status", "vm-1")
	for _, want := range []string{"provisioned (attempt 2)", "Link events (report 4):",
		"2026-12-03T14:00:01.000Z  carrier-back eth0 (carrier changes 4)",
		"dhcp-renewed eth0 via dhclient: 10.77.1.10/24 -> 10.78.1.20/24 in 78 ms",
		`dhcp-renewed eth\x1b]0;pwned\x07 via udhcpc: FAILED: no lease\x1b[2J in 3 ms`} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	if strings.ContainsAny(table, "\x1b\x07") {
		t.Errorf("guest control characters reached the terminal:\n%q", table)
	}
	if strings.Contains(table, "applying (attempt 1)") {
		t.Errorf("a first attempt is marked:\n%s", table)
	}

	bad := m.postReport("127.0.0.22", status.Report{Generation: 1, State: status.StateProvisioned,
		LinkEvents: []status.LinkEvent{{Time: at, Kind: "exploded", Interface: "eth0"}}})
	if bad.Code != http.StatusBadRequest || !strings.Contains(bad.Body.String(), "linkEvents[0].kind") {
		t.Errorf("bad link event: %d %s", bad.Code, bad.Body)
	}
	bad = m.postReport("127.0.0.22", status.Report{Generation: 1, State: status.StateProvisioned, Event: status.LinkCarrierBack, Attempt: 3})
	if bad.Code != http.StatusBadRequest || !strings.Contains(bad.Body.String(), "attempt") {
		t.Errorf("attempt on an event report: %d %s", bad.Code, bad.Body)
	}
}

// TestGetPrintable: prewarm-imds get prints the last report's error and
// event, the guest's text, escaped.
func TestGetPrintable(t *testing.T) {
	m := newTestIMDS(t)
	m.mustCLI("", "register", "vm-1", "--address", "127.0.0.23")
	m.mustCLI(`{"hostname":"web-1"}`, "publish", "vm-1", "-")
	if rec := m.postReport("127.0.0.23", status.Report{Generation: 1, State: status.StateFailed, Event: "x\x1b]0;t\x07", Error: "boom\x1b[2J"}); rec.Code != http.StatusNoContent {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	out := m.mustCLI("", "get", "vm-1")
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `boom\x1b[2J`) || !strings.Contains(out, `x\x1b]0;t\x07`) {
		t.Errorf("get printed the guest's control characters or lost the text:\n%q", out)
	}
}
