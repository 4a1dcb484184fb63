package status

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// fastReports are reports as the agent encodes them: DecodeFast must take
// every one of them.
func fastReports() []Report {
	at := Time{Time: time.Date(2026, 12, 3, 16, 40, 1, 234e6, time.UTC)}
	return []Report{
		{Seq: 1, Time: at, State: StateStarting, AgentVersion: "0.1.0"},
		{Seq: 7, Time: at, Generation: 3, State: StateProvisioned, AgentVersion: "0.1.0",
			Steps:       []Step{{Name: StepHostname, OK: true, MS: 3, Changed: true}, {Name: StepUsers, OK: false, MS: 41, Error: "useradd: exit 1 – ü"}},
			SSHHostKeys: []HostKey{{Type: "ssh-ed25519", Key: "AAAAC3NzaC1lZDI1NTE5AAAAIG", Fingerprint: "SHA256:abc"}}},
		{Seq: 1 << 63, Time: at, Generation: 1 << 62, State: StateWaiting, Event: EventDHCPRenewed, Interface: "eth0",
			Addresses: []string{"10.0.0.5/24", "fe80::1/64"}, RebootRequired: true, Attempt: 2,
			LinkEvents: []LinkEvent{{Time: at, Kind: LinkRenewed, Interface: "eth0", CarrierChanges: 4294967295, Coalesced: 3, Client: "builtin",
				OldAddresses: []string{}, Addresses: []string{"10.0.0.5/24"}, MS: 25, Error: "x"}}},
		{Seq: 2, Time: at, State: StateApplying, Steps: []Step{}, Addresses: []string{}, LinkEvents: []LinkEvent{}, SSHHostKeys: []HostKey{}},
	}
}

func TestDecodeFastTakesTheAgentsReports(t *testing.T) {
	for i, want := range fastReports() {
		b, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		indented, err := json.MarshalIndent(want, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range [][]byte{b, append(indented, " \r\n"...)} {
			var got Report
			if !DecodeFast(in, &got) {
				t.Fatalf("report %d: DecodeFast refused %s", i, in)
			}
			var std Report
			if err := json.Unmarshal(in, &std); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, std) {
				t.Errorf("report %d: DecodeFast = %+v, json.Unmarshal = %+v", i, got, std)
			}
		}
	}
}

// TestDecodeFastLeavesTheRest lists what the fast path hands to
// encoding/json (which decodes some of it differently or refuses it).
func TestDecodeFastLeavesTheRest(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `{"seq":1`, `{"seq":1}x`, `{"seq":1}{}`, `{"seq":1,}`,
		`{"Seq":1}`, `{"seq":1,"seq":2}`, `{"unknown":1}`, `{"seq":null}`, `{"steps":null}`,
		`{"seq":-1}`, `{"seq":1.0}`, `{"seq":1e3}`, `{"seq":01}`, `{"seq":18446744073709551616}`,
		`{"generation":9223372036854775808}`, `{"state":"a\"b"}`, `{"state":"a\u0041"}`, "{\"state\":\"\xff\"}",
		"{\"state\":\"a\tb\"}", `{"time":"yesterday"}`, `{"time":1}`, `{"rebootRequired":1}`, `{"rebootRequired":truex}`,
		`{"steps":[{"name":"a","name":"b"}]}`, `{"steps":[1]}`, `{"linkEvents":[{"carrierChanges":4294967296}]}`,
		`{"addresses":["a",1]}`, `{"seq":1 2}`,
	} {
		var r Report
		if DecodeFast([]byte(in), &r) {
			t.Errorf("DecodeFast took %q", in)
		}
	}
}

// FuzzDecodeFast: whatever DecodeFast takes, json.Unmarshal decodes to the
// same report.
func FuzzDecodeFast(f *testing.F) {
	for _, r := range fastReports() {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"seq":1,"time":"2026-12-03T16:40:01+02:00","state":"waiting","steps":[{}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var got Report
		if !DecodeFast(in, &got) {
			return
		}
		var std Report
		if err := json.Unmarshal(in, &std); err != nil {
			t.Fatalf("DecodeFast took %q, json.Unmarshal refuses it: %v", in, err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("%q: DecodeFast = %+v, json.Unmarshal = %+v", in, got, std)
		}
	})
}
