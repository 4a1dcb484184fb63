package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/internal/winetest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGoldenEncoding decodes each testdata/*.json document and compares its
// canonical encoding with testdata/*.golden, so a change of the wire format
// shows up as a diff.
func TestGoldenEncoding(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(raw)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, err := json.MarshalIndent(d, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding differs from %s:\n got: %s\nwant: %s", golden, got, want)
			}
			// The canonical encoding decodes to the same document.
			again, err := Decode(got)
			if err != nil {
				t.Fatalf("Decode(canonical): %v", err)
			}
			if b, _ := json.Marshal(again); !bytes.Equal(b, mustCompact(t, got)) {
				t.Errorf("round trip changed the document:\n%s\n%s", b, got)
			}
		})
	}
}

func mustCompact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestAbsentAndEmptyStayApart(t *testing.T) {
	d, err := Decode([]byte(`{"users":[{"name":"bob","sshAuthorizedKeys":[]},{"name":"carol","sshAuthorizedKeys":null}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Users[0].SSHAuthorizedKeys == nil {
		t.Error("[] decoded as absent; it means 'no keys'")
	}
	if d.Users[1].SSHAuthorizedKeys != nil {
		t.Error("null decoded as present; it means absent")
	}
	if d.Network != nil || d.UserData != nil {
		t.Error("absent sections decoded as present")
	}
}

func TestRedact(t *testing.T) {
	d, err := Decode([]byte(`{"users":[{"name":"bob","password":"hunter2"},{"name":"carol"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := d.Redact()
	if r.Users[0].Password != Redacted || r.Users[1].Password != "" {
		t.Errorf("Redact: got %q, %q", r.Users[0].Password, r.Users[1].Password)
	}
	if d.Users[0].Password != "hunter2" {
		t.Error("Redact changed the original")
	}
	b, _ := json.Marshal(r)
	if bytes.Contains(b, []byte("hunter2")) {
		t.Errorf("redacted encoding holds the password: %s", b)
	}
}

func TestTooLarge(t *testing.T) {
	big := `{"userData":"` + strings.Repeat("a", MaxDocumentBytes) + `"}`
	if _, err := Decode([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

const (
	goodKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2plYS/P/tB2XY0egMzB4sxeeeXeJxRYmaIlywv7goC alice@laptop"
	goodHash = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
)

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]string // path -> substring of the reason
	}{
		{"empty document is fine", `{}`, nil},
		{"nulls count as absent", `{"hostname":null,"users":null,"network":null,"partial":null}`, nil},
		{"valid options and zones", `{"timezone":"America/Argentina/Buenos_Aires","users":[{"name":"x","shell":"/bin/sh","sudo":"password","sshAuthorizedKeys":["from=\"10.0.0.0/8\",no-pty ` + goodKey + `"],"passwordHash":"$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"}]}`, nil},
		{"Etc zones and UTC", `{"timezone":"Etc/GMT+5"}`, nil},
		{"UTC", `{"timezone":"UTC"}`, nil},
		{"not an object", `[1]`, map[string]string{"": "must be an object"}},
		{"malformed JSON", `{"hostname":`, map[string]string{"": "must be a JSON object"}},
		{"trailing data", `{} {}`, map[string]string{"": "after it"}},
		{"unknown fields everywhere", `{"x":1,"users":[{"name":"a","y":2}],"network":{"z":3,"interfaces":[{"mac":"52:54:00:00:00:01","w":4,"routes":[{"to":"10.0.0.0/8","via":"10.1.1.1","v":5}]}]}}`,
			map[string]string{"x": "unknown field", "users[0].y": "unknown field", "network.z": "unknown field", "network.interfaces[0].w": "unknown field", "network.interfaces[0].routes[0].v": "unknown field"}},
		{"wrong types", `{"partial":"yes","hostname":1,"users":{},"network":{"renewDhcp":1.5}}`,
			map[string]string{"partial": "true or false", "hostname": "must be a string", "users": "must be an array", "network.renewDhcp": "integer"}},
		{"empty strings are not absent", `{"hostname":"","timezone":"","users":[{"name":"a","password":""}]}`,
			map[string]string{"hostname": "must not be empty", "timezone": "must not be empty", "users[0].password": "must not be empty"}},
		{"hostname rules", `{"hostname":"-web"}`, map[string]string{"hostname": "RFC 1123"}},
		{"hostname upper case", `{"hostname":"Web"}`, map[string]string{"hostname": "RFC 1123"}},
		{"hostname label too long", `{"hostname":"` + strings.Repeat("a", 64) + `"}`, map[string]string{"hostname": "RFC 1123"}},
		{"hostname too long", `{"hostname":"` + strings.Repeat("abcdefghi.", 26) + `a"}`, map[string]string{"hostname": "253"}},
		{"Local zone", `{"timezone":"Local"}`, map[string]string{"timezone": "Local"}},
		{"zone path trick", `{"timezone":"../../etc/passwd"}`, map[string]string{"timezone": "tzdata zone"}},
		{"unknown zone", `{"timezone":"Europe/Atlantis"}`, map[string]string{"timezone": `"Europe/Atlantis"`}},
		{"user data cap", `{"userData":"` + strings.Repeat("a", MaxUserDataBytes+1) + `"}`, map[string]string{"userData": "65536"}},
		{"missing user name", `{"users":[{"shell":"/bin/sh"}]}`, map[string]string{"users[0].name": "required"}},
		{"user not an object", `{"users":[3]}`, map[string]string{"users[0]": "must be an object"}},
		{"bad user names", `{"users":[{"name":"Alice"},{"name":"root"},{"name":"administrator"},{"name":"` + strings.Repeat("a", 33) + `"}]}`,
			map[string]string{"users[0].name": "must match", "users[1].name": "reserved", "users[2].name": "reserved", "users[3].name": "must match"}},
		{"duplicate users", `{"users":[{"name":"a"},{"name":"a"}]}`, map[string]string{"users[1].name": "duplicate of users[0].name"}},
		{"user fields", `{"users":[{"name":"a","groups":["ok","Bad"],"sudo":"always","shell":"bash","sshAuthorizedKeys":["` + goodKey + `","ssh-rsa notbase64"],"passwordHash":"plain"}]}`,
			map[string]string{"users[0].groups[1]": "must match", "users[0].sudo": "one of", "users[0].shell": "absolute", "users[0].sshAuthorizedKeys[1]": "OpenSSH", "users[0].passwordHash": "crypt(3)"}},
		{"hash of the wrong length", `{"users":[{"name":"a","passwordHash":"$6$salt$short"}]}`, map[string]string{"users[0].passwordHash": "crypt(3)"}},
		{"key with a line break", `{"users":[{"name":"a","sshAuthorizedKeys":["` + goodKey + `\n` + goodKey + `"]}]}`, map[string]string{"users[0].sshAuthorizedKeys[0]": "single"}},
		{"both passwords", `{"users":[{"name":"a","password":"x","passwordHash":"` + goodHash + `"}]}`, map[string]string{"users[0].password": "at most one"}},
		{"redacted password re-published", `{"users":[{"name":"a","password":"REDACTED"}]}`, map[string]string{"users[0].password": "REDACTED"}},
		{"password with newline", `{"users":[{"name":"a","password":"x\ny"}]}`, map[string]string{"users[0].password": "line breaks"}},
		{"network rules", `{"network":{"renewDhcp":-1,"interfaces":[{"mac":"52:54:00:12:34:56","addresses":["10.0.0.5","224.0.0.1/4"],"gateway4":"fe80::1","mtu":67,"nameservers":["nope"],"searchDomains":["bad_domain"],"routes":[{"to":"10.2.0.1/16","via":"10.1.0.254"},{"to":"10.3.0.0/16","via":"fe80::1"},{"to":"x"}]},{"mac":"52:54:00:12:34:56"},{"mac":"52:54:00:12:34"}]}}`,
			map[string]string{
				"network.renewDhcp":                      "negative",
				"network.interfaces[0].addresses[0]":     "prefix length",
				"network.interfaces[0].addresses[1]":     "unicast",
				"network.interfaces[0].gateway4":         "IPv4",
				"network.interfaces[0].mtu":              "between 68 and 65535",
				"network.interfaces[0].nameservers[0]":   "IP address",
				"network.interfaces[0].searchDomains[0]": "domain",
				"network.interfaces[0].routes[0].to":     "host bits",
				"network.interfaces[0].routes[1].via":    "family",
				"network.interfaces[0].routes[2].to":     "CIDR",
				"network.interfaces[0].routes[2].via":    "required",
				"network.interfaces[1].mac":              "duplicate of network.interfaces[0].mac",
				"network.interfaces[2].mac":              "48-bit",
			}},
		{"MAC case does not make a new interface", `{"network":{"interfaces":[{"mac":"52:54:00:AB:CD:EF"},{"mac":"52:54:00:ab:cd:ef"}]}}`,
			map[string]string{"network.interfaces[1].mac": "duplicate"}},
		{"static fields beside DHCP", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","dhcp4":true,"addresses":["10.0.0.5/24"],"gateway4":"10.0.0.1","routes":[{"to":"10.2.0.0/16","via":"10.0.0.254"}],"mtu":1400,"nameservers":["10.0.0.2"]}]}}`,
			map[string]string{"network.interfaces[0].addresses": "dhcp4", "network.interfaces[0].gateway4": "dhcp4", "network.interfaces[0].routes": "dhcp4"}},
		{"DHCP with MTU and DNS", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","dhcp4":true,"addresses":[],"mtu":1400,"nameservers":["10.0.0.2"]}]}}`, nil},
		{"IPv6 zones in every address field", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","addresses":["fe80::5%eth0/64"],"gateway4":"fe80::1%eth0","routes":[{"to":"2001:db8::/64","via":"fe80::1%x;touch /tmp/pwned"},{"to":"fe80::%x/64","via":"fe80::1"}],"nameservers":["fe80::1%eth0","fe80::2%a\nnameserver 1.2.3.4"]}]}}`,
			map[string]string{
				"network.interfaces[0].addresses[0]":   "zone",
				"network.interfaces[0].gateway4":       "zone",
				"network.interfaces[0].routes[0].via":  "zone",
				"network.interfaces[0].routes[1].to":   "zone",
				"network.interfaces[0].nameservers[0]": "zone",
				"network.interfaces[0].nameservers[1]": "zone",
			}},
		{"unzoned link-local and IPv6 addresses are fine", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","addresses":["2001:db8::5/64"],"routes":[{"to":"2001:db8:1::/48","via":"fe80::1"}],"nameservers":["fe80::53","2001:db8::53"]}]}}`, nil},
		{"hostname dotted quad", `{"hostname":"10.0.0.1"}`, map[string]string{"hostname": "IP address"}},
		{"hostname dotted quad 2", `{"hostname":"1.2.3.4"}`, map[string]string{"hostname": "IP address"}},
		{"hostname short IPv4 form", `{"hostname":"127.1"}`, map[string]string{"hostname": "IP address"}},
		{"hostname hex IPv4 form", `{"hostname":"0x7f000001"}`, map[string]string{"hostname": "IP address"}},
		{"hostname all-numeric last label", `{"hostname":"web.123"}`, map[string]string{"hostname": "IP address"}},
		{"hostnames with digits are fine", `{"hostname":"1web.example","network":{"interfaces":[{"mac":"52:54:00:12:34:56","searchDomains":["10.in-addr.arpa"]}]}}`, nil},
		{"timezone localtime", `{"timezone":"localtime"}`, map[string]string{"timezone": "localtime"}},
		{"mtu zero", `{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","mtu":0}]}}`, map[string]string{"network.interfaces[0].mtu": "between"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			got := map[string]string{}
			for _, f := range ve.Fields {
				if _, dup := got[f.Path]; dup {
					t.Errorf("path %q reported twice", f.Path)
				}
				got[f.Path] = f.Reason
			}
			for path, sub := range tt.want {
				if r, ok := got[path]; !ok {
					t.Errorf("no error for %q; got %v", path, ve.Fields)
				} else if !strings.Contains(r, sub) {
					t.Errorf("%s: reason %q does not mention %q", path, r, sub)
				}
			}
			for path := range got {
				if _, ok := tt.want[path]; !ok {
					t.Errorf("unexpected error for %q: %s", path, got[path])
				}
			}
		})
	}
}

// TestValidateTypedDocument covers documents built in code, which never
// pass through the decoder.
func TestValidateTypedDocument(t *testing.T) {
	d := &Document{Hostname: "ok", Network: &Network{Interfaces: []Interface{{MAC: MustParseMAC("52:54:00:00:00:01"), MTU: 70000}}}, Users: []User{{Name: ""}}}
	var ve *ValidationError
	if err := d.Validate(); !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("got %v, want errors for users[0].name and the MTU", err)
	}
}

// TestValidateTypedNetwork: typed values built in code, which no decoder
// saw, break the same rules with the same reasons: zones (netip keeps any
// bytes in one), missing values, host bits, families.
func TestValidateTypedNetwork(t *testing.T) {
	z := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	in := Interface{
		MAC:         MustParseMAC("52:54:00:12:34:56"),
		Addresses:   []netip.Prefix{netip.MustParsePrefix("10.0.0.4/24"), {}, netip.PrefixFrom(z("fe80::5%x;touch /tmp/pwned"), 64)},
		Gateway4:    z("fe80::1%eth0"),
		Routes:      []Route{{To: netip.MustParsePrefix("10.2.0.1/16"), Via: z("10.1.0.254")}, {Via: z("fe80::1%x\nup reboot")}, {To: netip.MustParsePrefix("10.3.0.0/16"), Via: z("fe80::1")}},
		Nameservers: []netip.Addr{z("10.1.0.2"), {}, z("fe80::53%a\nnameserver 6.6.6.6")},
	}
	want := map[string]string{
		"addresses[1]":   "prefix length",
		"gateway4":       "zone",
		"routes[0].to":   "host bits",
		"routes[1].to":   "CIDR",
		"routes[1].via":  "zone",
		"routes[2].via":  "family",
		"nameservers[1]": "IP address",
		"nameservers[2]": "zone",
	}
	var ve *ValidationError
	if err := in.Validate(); !errors.As(err, &ve) {
		t.Fatalf("Interface.Validate: %v, want a *ValidationError", err)
	}
	got := map[string]string{}
	for _, f := range ve.Fields {
		got[f.Path] = f.Reason
	}
	for path, sub := range want {
		if !strings.Contains(got[path], sub) {
			t.Errorf("%s: reason %q, want one mentioning %q", path, got[path], sub)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got errors %v, want %d", ve.Fields, len(want))
	}
	// The same entry inside a document: the same rules, under its path.
	d := &Document{Network: &Network{Interfaces: []Interface{in}}}
	if err := d.Validate(); !errors.As(err, &ve) || len(ve.Fields) != len(want) {
		t.Errorf("Document.Validate: %v, want %d errors", err, len(want))
	} else {
		for _, f := range ve.Fields {
			if sub, ok := want[strings.TrimPrefix(f.Path, "network.interfaces[0].")]; !ok || !strings.Contains(f.Reason, sub) {
				t.Errorf("Document.Validate: %s: %s", f.Path, f.Reason)
			}
		}
	}
	if err := (Interface{}).Validate(); !errors.As(err, &ve) || ve.Fields[0].Path != "mac" {
		t.Errorf("an entry without a MAC: %v", err)
	}
}

// TestCanonicalEncoding: address and MAC fields are stored in one canonical
// form whatever form was published; an interface address keeps its host
// bits (10.0.0.4/24 is an address, not the network 10.0.0.0/24).
func TestCanonicalEncoding(t *testing.T) {
	d, err := Decode([]byte(`{"network":{"interfaces":[{"mac":"52-54-00-AB-CD-EF","addresses":["10.0.0.4/24","2001:DB8:0:0::5/64"],"gateway4":"10.0.0.1","routes":[{"to":"2001:db8:1::/48","via":"FE80::1"}],"nameservers":["2001:0db8::53","10.0.0.2"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"network":{"interfaces":[{"mac":"52:54:00:ab:cd:ef","addresses":["10.0.0.4/24","2001:db8::5/64"],"gateway4":"10.0.0.1","routes":[{"to":"2001:db8:1::/48","via":"fe80::1"}],"nameservers":["2001:db8::53","10.0.0.2"]}]}}`
	if string(b) != want {
		t.Errorf("encoding\n got %s\nwant %s", b, want)
	}
	// encoding/json reads the canonical form back to the same values (the
	// IMDS and its clients unmarshal stored documents that way).
	var again Document
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&again, d) {
		t.Errorf("json.Unmarshal of the canonical form:\n got %+v\nwant %+v", again.Network.Interfaces, d.Network.Interfaces)
	}
}

func TestMAC(t *testing.T) {
	for in, want := range map[string]string{"52:54:00:AB:cd:ef": "52:54:00:ab:cd:ef", "52-54-00-ab-cd-ef": "52:54:00:ab:cd:ef", "5254.00ab.cdef": "52:54:00:ab:cd:ef"} {
		m, err := ParseMAC(in)
		if err != nil || m.String() != want || m.HardwareAddr().String() != want || !m.IsValid() {
			t.Errorf("ParseMAC(%q) = %v, %v; want %s", in, m, err, want)
		}
	}
	for _, in := range []string{"", "52:54:00:12:34", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "52:54:00:12:34:56\n", "../../etc"} {
		if m, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", in, m)
		}
	}
	var zero MAC
	if zero.IsValid() || zero.String() != "" || zero.HardwareAddr() != nil {
		t.Errorf("zero MAC: %v %q %v", zero.IsValid(), zero.String(), zero.HardwareAddr())
	}
	if err := zero.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText accepted nope")
	}
}

// TestZoneFileRule: a zone name whose file in a zone directory is a link
// leaving that directory, or a link loop, is refused; a link inside it is a
// zone like any other.
func TestZoneFileRule(t *testing.T) {
	dir := t.TempDir() + string(filepath.Separator)
	outside := t.TempDir()
	os.MkdirAll(dir+"Europe", 0o755)
	os.WriteFile(dir+"Europe/Berlin", []byte("TZif"), 0o644)
	os.WriteFile(outside+"/localtime", []byte("TZif"), 0o644)
	winetest.Symlink(t, filepath.FromSlash("Europe/Berlin"), dir+"Berlin")
	winetest.Symlink(t, filepath.Join(outside, "localtime"), dir+"Away")
	winetest.Symlink(t, "Loop2", dir+"Loop1")
	winetest.Symlink(t, "Loop1", dir+"Loop2")
	winetest.Symlink(t, filepath.Join("..", "..", filepath.Base(outside), "localtime"), dir+"Europe/Up")
	for zone, want := range map[string]string{
		"Europe/Berlin": "", "Berlin": "", "Absent": "",
		"Away": "outside", "Europe/Up": "outside", "Loop1": "does not resolve",
	} {
		got := zoneFileRule(dir, zone)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", zone, got, want)
		}
	}
}

// TestExportedRules: the rules the agents call as their second wall are the
// ones Validate applies, name for name.
func TestExportedRules(t *testing.T) {
	for _, tt := range []struct {
		rule string
		f    func(string) bool
		in   string
		want bool
	}{
		{"ValidHostname", ValidHostname, "web-01.corp.example", true},
		{"ValidHostname", ValidHostname, "10.0.0.1", false},
		{"ValidHostname", ValidHostname, "Web", false},
		{"ValidSearchDomain", ValidSearchDomain, "Corp.Example", true},
		{"ValidSearchDomain", ValidSearchDomain, "a.example,b.example", false},
		{"ValidUserName", ValidUserName, "alice", true},
		{"ValidUserName", ValidUserName, "root", true}, // reserved, a rule of its own
		{"ValidUserName", ValidUserName, "Alice", false},
		{"ValidShell", ValidShell, "/bin/bash", true},
		{"ValidShell", ValidShell, "/bin/sh -c", false},
		{"ValidPasswordHash", ValidPasswordHash, goodHash, true},
		{"ValidPasswordHash", ValidPasswordHash, "$1$saltsalt$qwertyuiopasdfghjklzx.", false},
		{"ValidPasswordHash", ValidPasswordHash, "$6$salt$short", false},
		{"ValidZoneName", ValidZoneName, "America/Argentina/Buenos_Aires", true},
		{"ValidZoneName", ValidZoneName, "Berlin", true}, // syntax only: no lookup
		{"ValidZoneName", ValidZoneName, "LocalTime", false},
		{"ValidZoneName", ValidZoneName, "Local", false},
		{"ValidZoneName", ValidZoneName, "../../etc/passwd", false},
	} {
		if got := tt.f(tt.in); got != tt.want {
			t.Errorf("%s(%q) = %v, want %v", tt.rule, tt.in, got, tt.want)
		}
	}
}
