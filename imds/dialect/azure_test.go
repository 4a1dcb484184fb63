package dialect

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

// Azure publishes no Go client for its instance metadata; these tests make
// the requests cloud-init's Azure datasource makes
// (/metadata/instance?api-version=2021-08-01&extended=true with
// Metadata: true, and /metadata/reprovisiondata?api-version=2019-06-01).

type azureInstanceJSON struct {
	Compute struct {
		Name      string `json:"name"`
		Location  string `json:"location"`
		VMID      string `json:"vmId"`
		OSProfile struct {
			AdminUsername                 string `json:"adminUsername"`
			ComputerName                  string `json:"computerName"`
			DisablePasswordAuthentication string `json:"disablePasswordAuthentication"`
		} `json:"osProfile"`
		PublicKeys []struct {
			KeyData string `json:"keyData"`
			Path    string `json:"path"`
		} `json:"publicKeys"`
		UserData *string `json:"userData"`
	} `json:"compute"`
	Network struct {
		Interface []struct {
			IPv4 struct {
				IPAddress []struct {
					PrivateIPAddress string `json:"privateIpAddress"`
				} `json:"ipAddress"`
				Subnet []struct {
					Address string `json:"address"`
					Prefix  string `json:"prefix"`
				} `json:"subnet"`
			} `json:"ipv4"`
			IPv6 struct {
				IPAddress []struct {
					PrivateIPAddress string `json:"privateIpAddress"`
				} `json:"ipAddress"`
			} `json:"ipv6"`
			MACAddress string `json:"macAddress"`
		} `json:"interface"`
	} `json:"network"`
}

var metadataTrue = map[string]string{"Metadata": "true"}

func TestAzureInstance(t *testing.T) {
	h := newHost(t, []string{NameAzure}, Settings{AvailabilityZone: "westeurope1"})
	fleet(h)
	srv := h.start(t)
	a, b := clientFrom(t, addrA), clientFrom(t, addrB)

	code, hdr, body := do(t, a, "GET", srv.URL+"/metadata/instance?api-version=2021-08-01&extended=true", metadataTrue)
	if code != 200 || hdr.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("instance: %d %q %s", code, hdr.Get("Content-Type"), body)
	}
	var got azureInstanceJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	c := got.Compute
	if c.Name != "vm-a" || c.OSProfile.ComputerName != "web-a" || c.OSProfile.AdminUsername != "alice" ||
		c.OSProfile.DisablePasswordAuthentication != "true" || c.Location != "westeurope1" || len(c.VMID) != 36 {
		t.Errorf("compute = %+v", c)
	}
	if len(c.PublicKeys) != 3 || c.PublicKeys[0].KeyData != keyAlice1 || c.PublicKeys[0].Path != "/home/alice/.ssh/authorized_keys" || c.PublicKeys[2].Path != "/home/bob/.ssh/authorized_keys" {
		t.Errorf("publicKeys = %+v", c.PublicKeys)
	}
	if c.UserData == nil {
		t.Error("no userData at api-version 2021-08-01")
	} else if ud, err := base64.StdEncoding.DecodeString(*c.UserData); err != nil || string(ud) != userDataA {
		t.Errorf("userData = %q (%v)", ud, err)
	}
	if n := got.Network.Interface; len(n) != 1 || n[0].MACAddress != "525400AA0001" || len(n[0].IPv4.IPAddress) != 2 ||
		n[0].IPv4.IPAddress[0].PrivateIPAddress != "10.1.0.5" || n[0].IPv4.Subnet[0].Address != "10.1.0.0" || n[0].IPv4.Subnet[0].Prefix != "24" ||
		len(n[0].IPv6.IPAddress) != 1 {
		t.Errorf("network = %+v", got.Network)
	}

	// vm-b sees its own; no userData before 2021-01-01.
	_, _, body = do(t, b, "GET", srv.URL+"/metadata/instance?api-version=2019-06-01", metadataTrue)
	got = azureInstanceJSON{}
	json.Unmarshal([]byte(body), &got)
	// vm-b's document has no NICs: no interface (item 16 of issue 13).
	if got.Compute.Name != "vm-b" || got.Compute.OSProfile.AdminUsername != "carol" || got.Compute.UserData != nil ||
		got.Network.Interface == nil || len(got.Network.Interface) != 0 {
		t.Errorf("vm-b instance = %s", body)
	}

	for _, tc := range []struct {
		path, want string
	}{
		{"/metadata/instance/compute/name?api-version=2017-08-01&format=text", "vm-a"},
		{"/metadata/instance/compute/osProfile/computerName?api-version=2021-02-01&format=text", "web-a"},
		{"/metadata/instance/network/interface/0/ipv4/ipAddress/1/privateIpAddress?api-version=2021-02-01&format=text", "10.1.0.6"},
		{"/metadata/instance/compute/osProfile?api-version=2021-02-01&format=text", "adminUsername\ncomputerName\ndisablePasswordAuthentication"},
		{"/metadata/instance/compute/name?api-version=2021-02-01&format=json", `"vm-a"`},
	} {
		code, _, body := do(t, a, "GET", srv.URL+tc.path, metadataTrue)
		if code != 200 || body != tc.want {
			t.Errorf("GET %s = %d %q, want %q", tc.path, code, body, tc.want)
		}
	}

	var versions struct {
		APIVersions []string `json:"apiVersions"`
	}
	code, _, body = do(t, a, "GET", srv.URL+"/metadata/versions", metadataTrue)
	if json.Unmarshal([]byte(body), &versions); code != 200 || len(versions.APIVersions) < 20 || versions.APIVersions[0] != "2017-03-01" {
		t.Errorf("versions: %d %s", code, body)
	}
}

// TestAzureNetwork checks that network/interface describes each NIC as
// Azure does (issue 13 item 16): every NIC of the document with its MAC
// and at least one IPv4 address when one is known (a dhcp4 NIC's from the
// registry, else the address the guest calls from), and no interface at
// all for a document without NICs (one with an empty macAddress makes
// netplan refuse cloud-init's whole network config).
func TestAzureNetwork(t *testing.T) {
	const (
		macS = "52:54:00:aa:00:11"
		macD = "52:54:00:aa:00:12"
		macE = "52:54:00:aa:00:13"
	)
	dhcp := func(macs ...string) *config.Document {
		d := &config.Document{Hostname: "net", Network: &config.Network{}}
		for _, m := range macs {
			d.Network.Interfaces = append(d.Network.Interfaces, config.Interface{MAC: config.MustParseMAC(m), DHCP4: true})
		}
		return d
	}
	staticThenDHCP := dhcp(macD)
	staticThenDHCP.Network.Interfaces = append([]config.Interface{{MAC: config.MustParseMAC(macS), Addresses: pfxs(addrB+"/8", "2001:db8::5/64", "2001:db8::6/64")}}, staticThenDHCP.Network.Interfaces...)
	type nic struct {
		mac  string
		ipv4 []string
		sub4 string // "address/prefix" of subnet[0], "" for none
		ipv6 []string
		sub6 string
	}
	for _, tc := range []struct {
		name   string
		doc    *config.Document
		byAddr bool // registered with its address; else by host interface only
		want   []nic
	}{
		{"one dhcp4 NIC, registered address", dhcp(macD), true, []nic{{mac: "525400AA0012", ipv4: []string{addrB}}}},
		{"one dhcp4 NIC, host interface only: the caller's address", dhcp(macD), false, []nic{{mac: "525400AA0012", ipv4: []string{addrB}}}},
		{"no network section", &config.Document{Hostname: "net"}, true, nil},
		{"no interfaces", &config.Document{Hostname: "net", Network: &config.Network{}}, true, nil},
		{"nothing published", nil, true, nil},
		{"static NIC takes the address, the dhcp4 NIC has none left", staticThenDHCP, true, []nic{
			{mac: "525400AA0011", ipv4: []string{addrB}, sub4: "127.0.0.0/8", ipv6: []string{"2001:db8::5", "2001:db8::6"}, sub6: "2001:db8::/64"},
			{mac: "525400AA0012"},
		}},
		{"two dhcp4 NICs, one address known", dhcp(macD, macE), true, []nic{{mac: "525400AA0012", ipv4: []string{addrB}}, {mac: "525400AA0013"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, []string{NameAzure}, Settings{})
			inst := h.register("vm-net", addrB, nil)
			if !tc.byAddr {
				inst.view.Addresses, inst.view.HostInterface = nil, "tap-net"
			}
			if tc.doc != nil {
				inst.publish(tc.doc)
			}
			srv := h.start(t)
			code, _, body := do(t, clientFrom(t, addrB), "GET", srv.URL+"/metadata/instance/network?api-version=2021-08-01", metadataTrue)
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			if strings.Contains(body, `"macAddress":""`) {
				t.Errorf("an interface without a MAC: %s", body)
			}
			var got struct {
				Interface []struct {
					IPv4 struct {
						IPAddress []struct {
							PrivateIPAddress string `json:"privateIpAddress"`
						} `json:"ipAddress"`
						Subnet []struct{ Address, Prefix string } `json:"subnet"`
					} `json:"ipv4"`
					IPv6 struct {
						IPAddress []struct {
							PrivateIPAddress string `json:"privateIpAddress"`
						} `json:"ipAddress"`
						Subnet []struct{ Address, Prefix string } `json:"subnet"`
					} `json:"ipv6"`
					MACAddress string `json:"macAddress"`
				} `json:"interface"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.Interface == nil {
				t.Fatalf("%s: %v (interface must be a list, [] when empty)", body, err)
			}
			var have []nic
			for _, in := range got.Interface {
				n := nic{mac: in.MACAddress}
				for _, a := range in.IPv4.IPAddress {
					n.ipv4 = append(n.ipv4, a.PrivateIPAddress)
				}
				for _, a := range in.IPv6.IPAddress {
					n.ipv6 = append(n.ipv6, a.PrivateIPAddress)
				}
				if len(in.IPv4.Subnet) > 0 {
					n.sub4 = in.IPv4.Subnet[0].Address + "/" + in.IPv4.Subnet[0].Prefix
				}
				if len(in.IPv6.Subnet) > 0 {
					n.sub6 = in.IPv6.Subnet[0].Address + "/" + in.IPv6.Subnet[0].Prefix
				}
				have = append(have, n)
			}
			if fmt.Sprint(have) != fmt.Sprint(tc.want) {
				t.Errorf("interfaces = %+v\nwant %+v\n%s", have, tc.want, body)
			}
		})
	}
}

func TestAzureErrors(t *testing.T) {
	h := newHost(t, []string{NameAzure}, Settings{})
	fleet(h)
	srv := h.start(t)
	a := clientFrom(t, addrA)
	type errBody struct {
		Error  string   `json:"error"`
		Newest []string `json:"newest-versions"`
	}
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		code               int
		err                string
		newest             bool
	}{
		{"no Metadata header", "GET", "/metadata/instance?api-version=2021-02-01", nil, 400, "Bad request. Required metadata header not specified", false},
		{"Metadata: false", "GET", "/metadata/instance?api-version=2021-02-01", map[string]string{"Metadata": "false"}, 400, "Bad request. Required metadata header not specified", false},
		{"no api-version", "GET", "/metadata/instance", metadataTrue, 400, "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds", true},
		{"bad api-version", "GET", "/metadata/instance?api-version=2099-01-01", metadataTrue, 400, "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds", true},
		{"POST", "POST", "/metadata/instance?api-version=2021-02-01", metadataTrue, 405, "Bad request. Only GET requests are supported", false},
		{"forwarded", "GET", "/metadata/instance?api-version=2021-02-01", map[string]string{"Metadata": "true", "X-Forwarded-For": "1.2.3.4"}, 403, "forwarded requests are refused", false},
		{"unknown node", "GET", "/metadata/instance/compute/nope?api-version=2021-02-01", metadataTrue, 404, "Not found", false},
		{"unknown API", "GET", "/metadata/attested/document?api-version=2021-02-01", metadataTrue, 404, "Not found", false},
		{"bad format", "GET", "/metadata/instance?api-version=2021-02-01&format=xml", metadataTrue, 400, "", false},
	} {
		code, hdr, body := do(t, a, tc.method, srv.URL+tc.path, tc.hdr)
		var e errBody
		if err := json.Unmarshal([]byte(body), &e); err != nil || code != tc.code || (tc.err != "" && e.Error != tc.err) || (len(e.Newest) == 3) != tc.newest || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want %d %q", tc.name, code, body, tc.code, tc.err)
		}
	}
	if code, _, body := do(t, clientFrom(t, addrUnknown), "GET", srv.URL+"/metadata/instance?api-version=2021-02-01", metadataTrue); code != 404 || body != `{"error":"unknown instance"}` {
		t.Errorf("unknown caller: %d %s", code, body)
	}
}

// ovfEnv is the part of ovf-env.xml cloud-init's OvfEnvXml reads.
type ovfEnv struct {
	XMLName      xml.Name `xml:"http://schemas.dmtf.org/ovf/environment/1 Environment"`
	Provisioning struct {
		Linux struct {
			HostName     string  `xml:"http://schemas.microsoft.com/windowsazure HostName"`
			UserName     string  `xml:"http://schemas.microsoft.com/windowsazure UserName"`
			UserPassword *string `xml:"http://schemas.microsoft.com/windowsazure UserPassword"`
			DisableSSHPw string  `xml:"http://schemas.microsoft.com/windowsazure DisableSshPasswordAuthentication"`
			CustomData   string  `xml:"http://schemas.microsoft.com/windowsazure CustomData"`
			Keys         []struct {
				Path  string `xml:"http://schemas.microsoft.com/windowsazure Path"`
				Value string `xml:"http://schemas.microsoft.com/windowsazure Value"`
			} `xml:"http://schemas.microsoft.com/windowsazure SSH>PublicKeys>PublicKey"`
		} `xml:"http://schemas.microsoft.com/windowsazure LinuxProvisioningConfigurationSet"`
	} `xml:"http://schemas.microsoft.com/windowsazure ProvisioningSection"`
	Platform struct {
		Settings struct {
			PreprovisionedVM string `xml:"http://schemas.microsoft.com/windowsazure PreprovisionedVm"`
		} `xml:"http://schemas.microsoft.com/windowsazure PlatformSettings"`
	} `xml:"http://schemas.microsoft.com/windowsazure PlatformSettingsSection"`
}

// TestAzureReprovision checks the pre-provisioning flow: 404 while the
// document is partial (or absent), the OVF environment of the final
// document once it is published.
func TestAzureReprovision(t *testing.T) {
	h := newHost(t, []string{NameAzure}, Settings{})
	a, bInst, _ := fleet(h)
	_ = a
	srv := h.start(t)
	const path = "/metadata/reprovisiondata?api-version=2019-06-01"
	b, c := clientFrom(t, addrB), clientFrom(t, addrC)
	for _, cl := range []*http.Client{b, c} {
		if code, _, body := do(t, cl, "GET", srv.URL+path, metadataTrue); code != 404 || body != `{"error":"Not found"}` {
			t.Errorf("partial or absent: %d %s, want 404", code, body)
		}
	}
	d := docB()
	d.Partial = false
	d.UserData = strp("#cloud-config\nruncmd: [echo <&>]\n")
	d.Users[0].Password = "s3cret<&>"
	bInst.publish(d)
	code, hdr, body := do(t, b, "GET", srv.URL+path, metadataTrue)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/xml") {
		t.Fatalf("final: %d %q %s", code, hdr.Get("Content-Type"), body)
	}
	var env ovfEnv
	if err := xml.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("ovf-env.xml does not parse: %v\n%s", err, body)
	}
	l := env.Provisioning.Linux
	ud, _ := base64.StdEncoding.DecodeString(l.CustomData)
	if l.HostName != "web-b" || l.UserName != "carol" || l.UserPassword == nil || *l.UserPassword != "s3cret<&>" || l.DisableSSHPw != "false" ||
		string(ud) != *d.UserData || len(l.Keys) != 1 || l.Keys[0].Value != keyCarol || l.Keys[0].Path != "/home/carol/.ssh/authorized_keys" ||
		env.Platform.Settings.PreprovisionedVM != "false" {
		t.Errorf("ovf-env = %+v\n%s", env, body)
	}
	// A final document without users (issue 13 item 17): cloud-init's
	// parser requires UserName, so it is there and empty; nothing else of
	// a user is invented.
	bInst.publish(&config.Document{Hostname: "web-b"})
	code, _, body = do(t, b, "GET", srv.URL+path, metadataTrue)
	env = ovfEnv{}
	if err := xml.Unmarshal([]byte(body), &env); code != 200 || err != nil {
		t.Fatalf("final without users: %d %v\n%s", code, err, body)
	}
	l = env.Provisioning.Linux
	if !strings.Contains(body, "<ns1:UserName></ns1:UserName>") || l.UserName != "" || l.UserPassword != nil || len(l.Keys) != 0 ||
		l.DisableSSHPw != "true" || l.HostName != "web-b" {
		t.Errorf("ovf-env without users = %+v\n%s", env, body)
	}
	// Without the api-version it is an api-version error, as on Azure.
	if code, _, _ := do(t, b, "GET", srv.URL+"/metadata/reprovisiondata", metadataTrue); code != 400 {
		t.Errorf("reprovisiondata without api-version: %d, want 400", code)
	}
}

// TestXMLEscapeMatchesEncodingXML holds xmlEscape to encoding/xml's
// EscapeText, which it replaces in the OVF document: every escaped
// character, characters XML refuses, invalid UTF-8, and random bytes.
func TestXMLEscapeMatchesEncodingXML(t *testing.T) {
	want := func(s string) string {
		var b strings.Builder
		if err := xml.EscapeText(&b, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	cases := []string{"", "plain", `a"b'c&d<e>f`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "\xff", "a\xc3", "\uFFFD", "\uFFFE\uFFFF",
		"\ud7ff\ue000", "\U0010FFFF", "é漢字🙂", "<UserName>&amp;</UserName>"}
	for r := rune(0); r < 0x110000; r += 7 {
		cases = append(cases, "x"+string(r)+"y")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if got, w := xmlEscape(s), want(s); got != w {
			t.Fatalf("xmlEscape(%q) = %q, encoding/xml writes %q", s, got, w)
		}
	}
	if got := xmlEscape(`<a & "b">`); got != "&lt;a &amp; &#34;b&#34;&gt;" {
		t.Errorf("xmlEscape(<a & \"b\">) = %q", got)
	}
}
