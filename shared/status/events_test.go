package status

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLinkEventsEncoding: a report's link events and attempt on the wire,
// and back.
func TestLinkEventsEncoding(t *testing.T) {
	at := Time{time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)}
	r := Report{Seq: 9, Time: at, Generation: 3, State: StateProvisioned, Attempt: 2, LinkEvents: []LinkEvent{
		{Time: at, Kind: LinkCarrierBack, Interface: "eth0", CarrierChanges: 4},
		{Time: at, Kind: LinkRenewed, Interface: "eth0", Client: "dhclient", OldAddresses: []string{"10.0.0.5/24"}, Addresses: []string{"10.1.0.7/24"}, MS: 812},
	}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"attempt":2`, `"linkEvents":[{"time":"2026-12-03T14:00:00.000Z","kind":"carrier-back","interface":"eth0","carrierChanges":4}`,
		`{"time":"2026-12-03T14:00:00.000Z","kind":"dhcp-renewed","interface":"eth0","client":"dhclient","oldAddresses":["10.0.0.5/24"],"addresses":["10.1.0.7/24"],"ms":812}]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("encoding %s\nlacks %s", b, want)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if back.Attempt != 2 || len(back.LinkEvents) != 2 || back.LinkEvents[1].Client != "dhclient" || back.LinkEvents[1].MS != 812 {
		t.Errorf("round trip: %+v", back)
	}
	plain, _ := json.Marshal(Report{Seq: 1, Time: at, State: StateWaiting})
	if strings.Contains(string(plain), "attempt") || strings.Contains(string(plain), "linkEvents") {
		t.Errorf("a report without them encodes %s", plain)
	}
}

// TestLinkEventsValidate: every broken rule of the link events and the
// attempt is named by its path.
func TestLinkEventsValidate(t *testing.T) {
	at := Time{time.Now()}
	r := Report{Seq: 1, Time: at, State: StateProvisioned, Generation: 1, Attempt: -1, LinkEvents: []LinkEvent{
		{Time: at, Kind: LinkCarrierLost, Interface: "eth0"},
		{Kind: "exploded", Interface: "", Client: "Evil\x1b[2J", MS: -5, Coalesced: -1, Addresses: []string{"10.0.0.5"}, OldAddresses: []string{"ok/what"}},
	}}
	var ve *ValidationError
	if err := r.Validate(); !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
	var paths []string
	for _, f := range ve.Fields {
		paths = append(paths, f.Path)
	}
	want := []string{"attempt", "linkEvents[1].time", "linkEvents[1].kind", "linkEvents[1].interface", "linkEvents[1].client",
		"linkEvents[1].ms", "linkEvents[1].coalesced", "linkEvents[1].oldAddresses[0]", "linkEvents[1].addresses[0]"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths %v\nwant  %v", paths, want)
	}

	many := Report{Seq: 1, Time: at, State: StateWaiting, LinkEvents: make([]LinkEvent, MaxLinkEvents+1)}
	if err := many.Validate(); err == nil || !strings.Contains(err.Error(), "linkEvents: at most 16 events (got 17)") {
		t.Errorf("17 events: %v", err)
	}
	for _, bad := range []Report{
		{Seq: 1, Time: at, State: StateWaiting, Attempt: 1},
		{Seq: 1, Time: at, State: StateProvisioned, Generation: 2, Event: EventDHCPRenewed, Attempt: 1},
		{Seq: 1, Time: at, State: StateStarting, Generation: 2, Attempt: 3},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "attempt: only on") {
			t.Errorf("%+v: Validate = %v, want the attempt refused", bad, err)
		}
	}
	for _, st := range []string{StateApplying, StateFailed, StatePartialReady, StateProvisioned} {
		ok := Report{Seq: 1, Time: at, State: st, Generation: 2, Attempt: 3}
		if err := ok.Validate(); err != nil {
			t.Errorf("attempt on %s: %v", st, err)
		}
	}
}
