// Package status holds the status report of the Prewarm wire contract
// (PROTOCOL.md section 4): what the agent sends to the IMDS and appends to
// the tenant's status log.
package status

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prewarm/prewarm/shared/config"
)

// MaxReportBytes is the largest status report body the IMDS accepts.
const MaxReportBytes = 65536

// States of a report.
const (
	StateStarting     = "starting"
	StateWaiting      = "waiting"
	StateApplying     = "applying"
	StatePartialReady = "partial-ready"
	StateProvisioned  = "provisioned"
	StateFailed       = "failed"
)

// Events mark things that are not a change of state.
const (
	EventDHCPRenewed = "dhcp-renewed"
	EventLinkFlap    = "link-flap"
)

// Step names, in the fixed order the agent applies them.
const (
	StepHostname = "hostname"
	StepTimezone = "timezone"
	StepUsers    = "users"
	StepNetwork  = "network"
)

// TimeFormat is the report's time format: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Report is one status report.
type Report struct {
	Seq          uint64 `json:"seq"`
	Time         Time   `json:"time"`
	Generation   int64  `json:"generation"`
	State        string `json:"state"`
	Steps        []Step `json:"steps,omitzero"`
	Error        string `json:"error"`
	AgentVersion string `json:"agentVersion"`
	Event        string `json:"event"`

	// Interface and Addresses accompany a dhcp-renewed or link-flap event:
	// the interface concerned and its addresses after the renewal.
	Interface string   `json:"interface,omitempty"`
	Addresses []string `json:"addresses,omitzero"`
	// RebootRequired is set when an applied step takes full effect only
	// after a restart (the Windows hostname).
	RebootRequired bool `json:"rebootRequired,omitempty"`
	// Attempt numbers the applies of Generation (1 the first, 2 its first
	// retry...), on the applying report and the outcome of each; absent
	// elsewhere.
	Attempt int `json:"attempt,omitempty"`
	// LinkEvents are the latest link events the agent saw, oldest first,
	// at most MaxLinkEvents (events.go).
	LinkEvents []LinkEvent `json:"linkEvents,omitzero"`
	// SSHHostKeys are the guest's SSH host public keys, in partial-ready
	// and provisioned reports (hostkeys.go).
	SSHHostKeys []HostKey `json:"sshHostKeys,omitzero"`
}

// Step is the outcome of one apply step.
type Step struct {
	Name           string `json:"name"`
	OK             bool   `json:"ok"`
	MS             int64  `json:"ms"`
	Changed        bool   `json:"changed,omitempty"`
	RebootRequired bool   `json:"rebootRequired,omitempty"`
	Error          string `json:"error,omitempty"`
}

// Time is a time.Time that encodes in TimeFormat (UTC, milliseconds).
type Time struct{ time.Time }

// MarshalJSON encodes t in TimeFormat.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(TimeFormat) + `"`), nil
}

// UnmarshalJSON accepts any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("time must be an RFC 3339 string")
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	if err != nil {
		return fmt.Errorf("time must be RFC 3339: %w", err)
	}
	t.Time = v
	return nil
}

// ValidState reports whether s is one of the states of the contract.
func ValidState(s string) bool {
	switch s {
	case StateStarting, StateWaiting, StateApplying, StatePartialReady, StateProvisioned, StateFailed:
		return true
	}
	return false
}

// FieldError names one offending field of a report by its path
// (steps[1].name) and the rule it breaks. It is the config's type, so
// every error object of the API lists its fields one way.
type FieldError = config.FieldError

// ValidationError lists every field error of one report.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	fields := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		fields[i] = f.Path + ": " + f.Reason
	}
	return "invalid status report: " + strings.Join(fields, "; ")
}

// FailureDetail is what a failed report says went wrong, one line each:
// "error: " and its error, then "step NAME: " and the error of each failed
// step whose error the report's error does not already hold.
func (r *Report) FailureDetail() string {
	var d []string
	if r.Error != "" {
		d = append(d, "error: "+r.Error)
	}
	for _, s := range r.Steps {
		if !s.OK && s.Error != "" && !strings.Contains(r.Error, s.Error) {
			d = append(d, fmt.Sprintf("step %s: %s", s.Name, s.Error))
		}
	}
	return strings.Join(d, "\n")
}

// Validate checks the rules the IMDS enforces on a received report. It
// returns a *ValidationError naming every offending field, or nil.
func (r *Report) Validate() error {
	var fields []FieldError
	fail := func(path, reason string) {
		fields = append(fields, FieldError{Path: path, Reason: reason})
	}
	if r.Seq == 0 {
		fail("seq", "must be at least 1")
	}
	if !ValidState(r.State) {
		fail("state", fmt.Sprintf("must be one of starting, waiting, applying, partial-ready, provisioned, failed (got %q)", r.State))
	}
	if r.Generation < 0 {
		fail("generation", "must not be negative")
	}
	if r.Time.IsZero() {
		fail("time", "required")
	}
	for i, s := range r.Steps {
		if s.Name == "" {
			fail(fmt.Sprintf("steps[%d].name", i), "required")
		}
	}
	checkHostKeys(r.SSHHostKeys, r.State, fail)
	checkAttempt(r, fail)
	checkLinkEvents(r.LinkEvents, fail)
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}
