package dialect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/shared/config"
)

// cloud-init's Azure datasource needs Azure's wire server besides IMDS, so
// it cannot provision from Prewarm alone; this test runs the parts of it
// that read IMDS (cloud-init's own Python, from Debian's package) against
// the Azure dialect: the instance metadata crawl, the fields it takes from
// it and the network config it renders from it, and the pre-provisioning
// poll of reprovisiondata with the ovf-env.xml parser it feeds.

const azProbe = `
import base64, json, sys
from cloudinit import url_helper
from cloudinit.sources import DataSourceAzure as dsaz
from cloudinit.sources.helpers import azure as helpers
out = {}
md = dsaz.get_metadata_from_imds(retries=0, api_version=dsaz.IMDS_VER_WANT)
out["user"] = dsaz._username_from_imds(md)
out["host"] = dsaz._hostname_from_imds(md)
out["userData"] = dsaz._userdata_from_imds(md)
out["noPassword"] = dsaz._disable_password_from_imds(md)
out["keys"] = [k["keyData"] for k in md["compute"]["publicKeys"]]
out["macs"] = [i["macAddress"] for i in md["network"]["interface"]]
# The network config cloud-init renders from IMDS (apply_network_config,
# on by default); an exception here makes it fall back to DHCP on one NIC.
try:
    out["net"] = dsaz.generate_network_config_from_instance_network_metadata(md["network"])
except Exception as e:
    out["netError"] = repr(e)
url = dsaz.MetadataType.REPROVISION_DATA.value + "?api-version=" + dsaz.IMDS_VER_MIN
try:
    r = url_helper.readurl(url, headers={"Metadata": "true"}, retries=0, timeout=5)
    contents = r.contents.decode()
    ovf = helpers.OvfEnvXml.parse_text(contents)
    out["ovf"] = {"user": ovf.username, "host": ovf.hostname,
                  "customData": ovf.custom_data.decode() if ovf.custom_data else None,
                  "keys": [k["value"] for k in ovf.public_keys],
                  "password": ovf.password, "disableSshPassword": ovf.disable_ssh_password_auth,
                  "preprovisioned": ovf.preprovisioned_vm}
    # What _reprovision and crawl_metadata do with it after the poll.
    _, _, cfg = dsaz.read_azure_ovf(contents)
    md2 = dsaz.get_metadata_from_imds(retries=0, api_version=dsaz.IMDS_VER_WANT)
    user = dsaz._username_from_imds(md2)
    if user:
        cfg["system_info"]["default_user"]["name"] = user
    out["defaultUser"] = cfg.get("system_info", {}).get("default_user", {}).get("name")
except url_helper.UrlError as e:
    out["reprovisionCode"] = e.code
except Exception as e:
    out["ovfError"] = repr(e)
print(json.dumps(out))
`

type azProbeResult struct {
	User, Host, UserData string
	NoPassword           bool
	Keys, Macs           []string
	Net                  *azNetConfig
	NetError             string
	ReprovisionCode      int
	OVFError             string
	DefaultUser          *string
	OVF                  *struct {
		User, Host, CustomData, Password string
		Keys                             []string
		DisableSSHPassword               bool `json:"disableSshPassword"`
		Preprovisioned                   bool
	}
}

// azNetConfig is the netplan-style (version 2) config cloud-init renders
// from network/interface.
type azNetConfig struct {
	Version   int
	Ethernets map[string]struct {
		Match struct {
			MACAddress string `json:"macaddress"`
		}
		DHCP4     bool
		DHCP6     bool
		Addresses []string
		SetName   string `json:"set-name"`
	}
}

// TestCloudInitAzureCode runs cloud-init's Azure IMDS code against the
// Azure dialect in a private network namespace where 169.254.169.254 is
// local (a netlab namespace this test re-runs itself in). Needs root, ip
// and cloud-init; skipped otherwise.
func TestCloudInitAzureCode(t *testing.T) {
	if netlab.InGuest() {
		azInNetns(t)
		return
	}
	if testing.Short() {
		t.Skip("cloud-init run skipped in -short mode")
	}
	netlab.RequireRoot(t, "cloud-init", "/usr/bin/python3")
	ns := netlab.NewNetns(t, netlab.Unique("pwaz"))
	ns.IP(t, "addr", "add", "169.254.169.254/32", "dev", "lo")
	ns.RunTest(t, "TestCloudInitAzureCode", 90*time.Second)
}

// azInNetns is the test inside its network namespace, where
// 169.254.169.254 is on lo.
func azInNetns(t *testing.T) {
	h := newHost(t, []string{NameAzure}, Settings{AvailabilityZone: "westeurope1"})
	d := docA()
	d.Partial = true
	// The guest reaches 169.254.169.254 on lo, from that same address.
	inst := h.register("vm-az", "169.254.169.254", d)
	ln, err := net.Listen("tcp", "169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	probe := func() azProbeResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", azProbe)
		cmd.Dir = t.TempDir()
		b, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("cloud-init probe: %v\n%s\n%s", err, b, tail(stderr, 30))
		}
		var r azProbeResult
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("probe output %q: %v", b, err)
		}
		t.Logf("cloud-init read: %s", b)
		return r
	}

	r := probe()
	ud, _ := base64.StdEncoding.DecodeString(r.UserData)
	if r.User != "alice" || r.Host != "web-a" || string(ud) != userDataA || !r.NoPassword ||
		strings.Join(r.Keys, "\n") != keyAlice1+"\n"+keyAlice2+"\n"+keyBob || len(r.Macs) != 1 || r.Macs[0] != "525400AA0001" {
		t.Errorf("cloud-init's view of /metadata/instance: %+v", r)
	}
	if r.ReprovisionCode != 404 || r.OVF != nil {
		t.Errorf("reprovisiondata while partial: code %d, ovf %v; want 404", r.ReprovisionCode, r.OVF)
	}

	if r.Net == nil || len(r.Net.Ethernets) != 1 || r.Net.Ethernets["eth0"].Match.MACAddress != macA ||
		!r.Net.Ethernets["eth0"].DHCP4 || strings.Join(r.Net.Ethernets["eth0"].Addresses, ",") != "10.1.0.6/24" {
		t.Errorf("cloud-init's network config of a static NIC: %+v %s", r.Net, r.NetError)
	}

	final := docA()
	final.Users[0].Password = "Pa55-<word>"
	// A second IPv6 address: cloud-init takes its prefix from subnet[0].
	final.Network.Interfaces[0].Addresses = append(final.Network.Interfaces[0].Addresses, netip.MustParsePrefix("2001:db8:1::6/64"))
	inst.publish(final)
	r = probe()
	if r.OVF == nil {
		t.Fatalf("reprovisiondata of the final document: code %d, %s", r.ReprovisionCode, r.OVFError)
	}
	if r.Net == nil || strings.Join(r.Net.Ethernets["eth0"].Addresses, ",") != "10.1.0.6/24,2001:db8:1::6/64" || !r.Net.Ethernets["eth0"].DHCP6 {
		t.Errorf("cloud-init's network config with two IPv6 addresses: %+v %s", r.Net, r.NetError)
	}
	o := r.OVF
	if o.User != "alice" || o.Host != "web-a" || o.CustomData != userDataA || o.Password != "Pa55-<word>" || o.DisableSSHPassword ||
		o.Preprovisioned || strings.Join(o.Keys, "\n") != keyAlice1+"\n"+keyAlice2 {
		t.Errorf("cloud-init's OvfEnvXml of reprovisiondata: %+v", *o)
	}
	if r.NoPassword {
		t.Error("disablePasswordAuthentication still true with a password")
	}
	if r.DefaultUser == nil || *r.DefaultUser != "alice" {
		t.Errorf("cloud-init's default user after reprovisioning: %v, want alice", r.DefaultUser)
	}

	// A final document without users (issue 13 item 17) and with one
	// dhcp4 NIC (item 16): cloud-init reprovisions, keeps the image's
	// default user (no name from the OVF or IMDS), and configures the
	// NIC by DHCP.
	inst.publish(&config.Document{Hostname: "web-z", Network: &config.Network{Interfaces: []config.Interface{{MAC: config.MustParseMAC(macA), DHCP4: true}}}})
	r = probe()
	if r.OVF == nil {
		t.Fatalf("reprovisiondata of a final document without users: code %d, %s", r.ReprovisionCode, r.OVFError)
	}
	if r.OVF.User != "" || r.OVF.Host != "web-z" || len(r.OVF.Keys) != 0 || r.OVF.Password != "" || r.DefaultUser != nil || r.User != "" {
		t.Errorf("reprovisioning without users: ovf %+v, default user %v, IMDS adminUsername %q; want no user at all", *r.OVF, r.DefaultUser, r.User)
	}
	if r.Net == nil || len(r.Net.Ethernets) != 1 || r.Net.Ethernets["eth0"].Match.MACAddress != macA || !r.Net.Ethernets["eth0"].DHCP4 {
		t.Errorf("cloud-init's network config of a dhcp4 NIC: %+v %s", r.Net, r.NetError)
	}

	// A document without NICs: no interface, so cloud-init renders no
	// ethernet (not one matching an empty MAC, which netplan refuses).
	inst.publish(&config.Document{Hostname: "web-z"})
	r = probe()
	if r.Net == nil || len(r.Net.Ethernets) != 0 || len(r.Macs) != 0 {
		t.Errorf("cloud-init's network config of a document without NICs: %+v %s (macs %q)", r.Net, r.NetError, r.Macs)
	}
}
