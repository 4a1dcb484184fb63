package dhcp

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestParseHostName(t *testing.T) {
	for in, want := range map[string]hostName{
		"web-1":                 {Short: "web-1"},
		"Web-1.Example.COM.":    {Short: "web-1", FQDN: "web-1.example.com"},
		"":                      {},
		"(none)":                {},
		"localhost":             {},
		"localhost.localdomain": {},
		// Not DNS names: none sent (the name goes into dhclient's config
		// and udhcpc's command line as it is).
		"web\"; script \"/tmp/x":                  {},
		"web\nscript":                             {},
		"web..example.com":                        {},
		strings.Repeat("a", 64):                   {},
		"web." + strings.Repeat("a", 64) + ".com": {},
		"web_1.example.com":                       {Short: "web_1", FQDN: "web_1.example.com"},
	} {
		if got := parseHostName(in); got != want {
			t.Errorf("parseHostName(%q) = %+v, want %+v", in, got, want)
		}
	}
}

// TestHostNameOptions: the built-in client's DISCOVER/REQUEST carries
// option 12 with the first label and option 81 (flags E|S, RCODEs 0, the
// name in DNS wire format) with the FQDN; nothing for no name.
func TestHostNameOptions(t *testing.T) {
	m, err := dhcpv4.New(hostName{Short: "web-1", FQDN: "web-1.example.com"}.modifiers()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.HostName(); got != "web-1" {
		t.Errorf("option 12 = %q, want web-1", got)
	}
	want := append([]byte{0x05, 0, 0, 5}, "web-1\x07example\x03com\x00"...)
	if got := m.Options.Get(dhcpv4.OptionFQDN); !bytes.Equal(got, want) {
		t.Errorf("option 81 = %q, want %q", got, want)
	}
	m, _ = dhcpv4.New(hostName{Short: "web-1"}.modifiers()...)
	if m.Options.Has(dhcpv4.OptionFQDN) || m.HostName() != "web-1" {
		t.Errorf("a short name: option 81 %v, option 12 %q; want none and web-1", m.Options.Has(dhcpv4.OptionFQDN), m.HostName())
	}
	if mods := (hostName{}).modifiers(); mods != nil {
		t.Errorf("no name: %d options, want none", len(mods))
	}
}

func TestUdhcpcArgv(t *testing.T) {
	in := []string{"udhcpc", "-b", "-i", "eth0", "-x", "hostname:old", "-x", "lease:60", "-F", "old.example.com", "-p", "/run/u.pid"}
	if got := udhcpcHostName(in); got != "old.example.com" {
		t.Errorf("udhcpcHostName = %q", got)
	}
	got := udhcpcArgv(in, hostName{Short: "web-2", FQDN: "web-2.example.com"})
	want := []string{"udhcpc", "-b", "-i", "eth0", "-x", "lease:60", "-p", "/run/u.pid", "-x", "hostname:web-2", "-F", "web-2.example.com"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("udhcpcArgv = %q\nwant %q", got, want)
	}
	if n := udhcpcHostName(got); n != "web-2.example.com" {
		t.Errorf("the new command line sends %q", n)
	}
	if n := udhcpcHostName([]string{"busybox", "udhcpc", "-i", "eth0", "--hostname=Box"}); n != "box" {
		t.Errorf("--hostname= form: %q", n)
	}
	if !udhcpcForeground([]string{"udhcpc", "-f", "-i", "eth0"}) || udhcpcForeground(in) {
		t.Error("udhcpcForeground")
	}
}

// TestDhclientConfig: a config that sends the host name is used as it is;
// one that does not is copied into the state directory with the statement
// (and option 81 for an FQDN) added; a copy is rebuilt from its original
// part, so a later name replaces the earlier one.
func TestDhclientConfig(t *testing.T) {
	dir := t.TempDir()
	sends := filepath.Join(dir, "sends.conf")
	os.WriteFile(sends, []byte("send host-name = gethostname();\n"), 0o644)
	got, err := dhclientConfig([]string{"dhclient", "-cf", sends, "eth0"}, dir, "eth0", hostName{Short: "a"})
	if err != nil || got != sends {
		t.Fatalf("a config sending the name: %q, %v; want it unchanged", got, err)
	}
	bare := filepath.Join(dir, "bare.conf")
	os.WriteFile(bare, []byte("request subnet-mask, routers;\n#send host-name \"x\";"), 0o644)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o755)
	got, err = dhclientConfig([]string{"dhclient", "-cf", bare, "eth0"}, state, "eth0", hostName{Short: "web-1", FQDN: "web-1.example.com"})
	if err != nil || got != filepath.Join(state, "dhclient.eth0.conf") {
		t.Fatalf("a bare config: %q, %v", got, err)
	}
	b, _ := os.ReadFile(got)
	for _, w := range []string{"request subnet-mask, routers;", "send host-name = gethostname();", `send fqdn.fqdn "web-1.example.com.";`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("the copy lacks %q:\n%s", w, b)
		}
	}
	// The restarted dhclient reads the copy: the next name rebuilds it.
	again, err := dhclientConfig([]string{"dhclient", "-cf", got, "eth0"}, state, "eth0", hostName{Short: "web-2", FQDN: "web-2.example.com"})
	if err != nil || again != got {
		t.Fatalf("the copy again: %q, %v", again, err)
	}
	b, _ = os.ReadFile(got)
	if strings.Contains(string(b), "web-1") || !strings.Contains(string(b), "web-2.example.com") || strings.Count(string(b), dhclientMarker) != 1 {
		t.Errorf("the rebuilt copy:\n%s", b)
	}
	if got, err := dhclientConfig([]string{"dhclient", "-cf", bare, "eth0"}, "", "eth0", hostName{Short: "a"}); err != nil || got != "" {
		t.Errorf("no state directory: %q, %v; want \"\" (keep the command line)", got, err)
	}
}

func TestDhcpcdSendsHostName(t *testing.T) {
	dir := t.TempDir()
	with, without := filepath.Join(dir, "with.conf"), filepath.Join(dir, "without.conf")
	os.WriteFile(with, []byte("noarp\nhostname # for DNS\n"), 0o644)
	os.WriteFile(without, []byte("noarp\n# hostname\n"), 0o644)
	if ok, _ := dhcpcdSendsHostName([]string{"dhcpcd", "-f", with, "eth0"}); !ok {
		t.Error("a config with hostname")
	}
	if ok, p := dhcpcdSendsHostName([]string{"dhcpcd", "-f", without, "eth0"}); ok || p != without {
		t.Errorf("a config without: %v %q", ok, p)
	}
	if ok, _ := dhcpcdSendsHostName([]string{"dhcpcd", "-h", "x", "-f", without, "eth0"}); !ok {
		t.Error("-h on the command line")
	}
	if ok, p := dhcpcdSendsHostName([]string{"dhcpcd: eth0 [ip4]"}); !ok || p != "" {
		t.Errorf("a title hides the config: %v %q, want true (unknown)", ok, p)
	}
}

// TestClientSendsHostName: the clients whose renewal would send the old
// name (so the agent makes none for a new one) are a dhcpcd whose config
// has no "hostname" and a udhcpc in the foreground naming another; a
// background udhcpc is restarted with the name, the others send it.
func TestClientSendsHostName(t *testing.T) {
	dir := t.TempDir()
	without := filepath.Join(dir, "without.conf")
	os.WriteFile(without, []byte("noarp\n"), 0o644)
	host := hostName{Short: "web-1", FQDN: "web-1.example.com"}
	for _, c := range []struct {
		ow   owner
		want bool
	}{
		{owner{Client: Dhcpcd, PID: 10, Argv: []string{"dhcpcd", "-f", without, "eth0"}}, false},
		{owner{Client: Dhcpcd, PID: 10, Argv: []string{"dhcpcd", "-h", "x", "-f", without, "eth0"}}, true},
		{owner{Client: Udhcpc, PID: 10, Argv: []string{"udhcpc", "-f", "-i", "eth0", "-x", "hostname:old"}}, false},
		{owner{Client: Udhcpc, PID: 10, Argv: []string{"udhcpc", "-f", "-i", "eth0", "-x", "hostname:web-1", "-F", "web-1.example.com"}}, true},
		{owner{Client: Udhcpc, PID: 10, Argv: []string{"udhcpc", "-b", "-i", "eth0", "-x", "hostname:old"}}, true},
		{owner{Client: Dhclient, PID: 10, Argv: []string{"dhclient", "eth0"}}, true},
		{owner{Client: Builtin}, true},
		{owner{Client: Networkd}, true},
	} {
		if got := clientSendsHostName(c.ow, host); got != c.want {
			t.Errorf("%s %v: sends the name %v, want %v", c.ow.Client, c.ow.Argv, got, c.want)
		}
	}
}
