package status

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReportEncoding(t *testing.T) {
	r := Report{
		Seq: 7, Time: Time{time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("x", 3600))},
		Generation: 4, State: StateProvisioned,
		Steps:        []Step{{Name: StepHostname, OK: true, MS: 3}, {Name: StepUsers, OK: true, MS: 41}},
		AgentVersion: "0.1.0",
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":7,"time":"2026-11-21T09:00:00.123Z","generation":4,"state":"provisioned","steps":[{"name":"hostname","ok":true,"ms":3},{"name":"users","ok":true,"ms":41}],"error":"","agentVersion":"0.1.0","event":""}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(r.Time.Truncate(time.Millisecond)) || back.Seq != 7 || len(back.Steps) != 2 {
		t.Errorf("round trip: %+v", back)
	}
	if err := back.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestReportValidate(t *testing.T) {
	var r Report
	if err := json.Unmarshal([]byte(`{"seq":0,"state":"done","generation":-1,"steps":[{"ok":true}]}`), &r); err != nil {
		t.Fatal(err)
	}
	err := r.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, s := range []string{"seq", "state", "generation", "time", "steps[0].name"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if err := json.Unmarshal([]byte(`{"time":"yesterday"}`), &r); err == nil {
		t.Error("bad time accepted")
	}
}

// TestReportValidateFields: Validate names every offending field by its
// path, as config validation does, so the IMDS's 400 lists them.
func TestReportValidateFields(t *testing.T) {
	r := Report{State: "done", Generation: -1, Steps: []Step{{Name: "hostname"}, {OK: true}}}
	var ve *ValidationError
	if err := r.Validate(); !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
	var paths []string
	for _, f := range ve.Fields {
		if f.Reason == "" {
			t.Errorf("field %s without a reason", f.Path)
		}
		paths = append(paths, f.Path)
	}
	if want := []string{"seq", "state", "generation", "time", "steps[1].name"}; !slices.Equal(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	if !strings.HasPrefix(ve.Error(), "invalid status report: seq: must be at least 1; state: ") {
		t.Errorf("Error() = %q", ve.Error())
	}
	ok := Report{Seq: 1, Time: Time{time.Now()}, State: StateWaiting}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid report: %v", err)
	}
}

func TestFailureDetail(t *testing.T) {
	r := &Report{Error: "apply users: useradd exited 9", Steps: []Step{
		{Name: "hostname", OK: true},
		{Name: "users", Error: "useradd exited 9"},          // already in the report's error
		{Name: "network", Error: "netlink: no such device"}, // its own
		{Name: "timezone", Error: ""},
	}}
	want := "error: apply users: useradd exited 9\nstep network: netlink: no such device"
	if got := r.FailureDetail(); got != want {
		t.Errorf("FailureDetail = %q, want %q", got, want)
	}
	if got := (&Report{Steps: []Step{{Name: "hostname", OK: true}}}).FailureDetail(); got != "" {
		t.Errorf("FailureDetail of a report without errors = %q, want empty", got)
	}
}
