package dialect

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Azure's instance metadata service: /metadata/instance, /metadata/versions
// and /metadata/reprovisiondata (the provisioning data a pre-provisioned
// VM polls for, which is exactly Prewarm's partial-then-final flow).

// azureVersions are the api-version values Azure IMDS accepts, oldest
// first.
var azureVersions = []string{
	"2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01",
	"2018-02-01", "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11",
	"2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01", "2019-08-15",
	"2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01",
	"2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01",
	"2021-08-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
	"2022-02-01", "2022-03-01", "2022-07-01", "2022-08-01", "2022-11-01",
	"2023-07-01",
}

var (
	azureVersionSet = setOf(azureVersions)
	// azureNewest is what Azure lists with an api-version error: the
	// three newest versions, newest first.
	azureNewest = []string{azureVersions[len(azureVersions)-1], azureVersions[len(azureVersions)-2], azureVersions[len(azureVersions)-3]}
	hdrJSON     = []string{"application/json; charset=utf-8"}
	hdrXML      = []string{"text/xml; charset=utf-8"}
	hdrTextUTF8 = []string{"text/plain; charset=utf-8"}
)

// Azure's error texts.
const (
	azureNoMetadata    = "Bad request. Required metadata header not specified"
	azureNoAPIVersion  = "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds"
	azureBadAPIVersion = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds"
	azureNotFound      = "Not found"
	azureOnlyGET       = "Bad request. Only GET requests are supported"
)

const (
	azurePathInstance  = "/metadata/instance"
	azurePathVersions  = "/metadata/versions"
	azurePathReprovion = "/metadata/reprovisiondata"
)

type azureDialect struct{ set *Set }

func (d *azureDialect) Name() string { return NameAzure }

type azureError struct {
	Error          string   `json:"error"`
	NewestVersions []string `json:"newest-versions,omitempty"`
}

// Check applies Azure's rules: GET only (405), the Metadata: true header
// and a known api-version on every path but /metadata/versions (400, with
// Azure's bodies).
func (d *azureDialect) Check(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET"}
		d.Error(w, r, http.StatusMethodNotAllowed, azureOnlyGET)
		return false
	}
	if md := r.Header["Metadata"]; len(md) != 1 || !strings.EqualFold(md[0], "true") {
		d.Error(w, r, http.StatusBadRequest, azureNoMetadata)
		return false
	}
	if strings.TrimSuffix(r.URL.Path, "/") == azurePathVersions {
		return true
	}
	q := query(r)
	av, ok := q["api-version"]
	switch {
	case !ok || len(av) == 0 || av[0] == "":
		d.writeJSON(w, http.StatusBadRequest, azureError{Error: azureNoAPIVersion, NewestVersions: azureNewest})
		return false
	case len(av) > 1 || !azureVersionSet[av[0]]:
		d.writeJSON(w, http.StatusBadRequest, azureError{Error: azureBadAPIVersion, NewestVersions: azureNewest})
		return false
	}
	if f, ok := q["format"]; ok && (len(f) != 1 || (f[0] != "json" && f[0] != "text")) {
		d.Error(w, r, http.StatusBadRequest, "Bad request. Format "+strconv.Quote(strings.Join(f, ","))+" is not supported. Supported formats are json and text")
		return false
	}
	return true
}

// Error answers Azure's error object.
func (d *azureDialect) Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	d.writeJSON(w, code, azureError{Error: msg})
}

func (d *azureDialect) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"Internal server error"}`)
	}
	writeBody(w, code, hdrJSON, string(b))
}

// Serve answers /metadata/versions, /metadata/instance[/...] and
// /metadata/reprovisiondata for inst.
func (d *azureDialect) Serve(w http.ResponseWriter, r *http.Request, inst Instance, _ <-chan struct{}) {
	v, _ := inst.Current()
	if v.Deleted {
		d.Error(w, r, http.StatusNotFound, "unknown instance")
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	q := query(r)
	switch {
	case path == azurePathVersions:
		d.writeJSON(w, http.StatusOK, struct {
			APIVersions []string `json:"apiVersions"`
		}{azureVersions})
	case path == azurePathReprovion:
		if v.Doc == nil || v.Doc.Partial {
			// cloud-init polls this while the VM sits in the pool: 404
			// means "not yet".
			d.Error(w, r, http.StatusNotFound, azureNotFound)
			return
		}
		writeBody(w, http.StatusOK, hdrXML, azureOVF(v))
	case path == azurePathInstance || strings.HasPrefix(path, azurePathInstance+"/"):
		d.serveInstance(w, r, v, strings.TrimPrefix(path, azurePathInstance), q.Get("api-version"), q.Get("format"))
	default:
		d.Error(w, r, http.StatusNotFound, azureNotFound)
	}
}

// serveInstance answers /metadata/instance or a node below it
// (/metadata/instance/compute/name?...&format=text).
func (d *azureDialect) serveInstance(w http.ResponseWriter, r *http.Request, v *View, sub, apiVersion, format string) {
	// The document and its generic tree (for walks to a node) are
	// rendered once per view; they differ only by userData, which
	// arrived with 2021-01-01.
	ud := 0
	if apiVersion >= "2021-01-01" {
		ud = 1
	}
	// The caller's address is part of the rendering only when a dhcp4
	// NIC may need it; the cache is keyed by it.
	src := ""
	if azureNeedsSource(v) {
		src = sourceIPv4(r)
	}
	doc := cachedKey(&v.azure[ud], d.set, src, func() *azureRendered {
		b, _ := json.Marshal(azureInstance(v, d.set.settings, apiVersion, src))
		var tree any
		json.Unmarshal(b, &tree)
		return &azureRendered{body: b, tree: tree}
	})
	if strings.Trim(sub, "/") == "" && format != "text" {
		writeBody(w, http.StatusOK, hdrJSON, doc.body)
		return
	}
	cur := doc.tree
	for _, seg := range strings.Split(strings.Trim(sub, "/"), "/") {
		if seg == "" {
			continue
		}
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				d.Error(w, r, http.StatusNotFound, azureNotFound)
				return
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				d.Error(w, r, http.StatusNotFound, azureNotFound)
				return
			}
			cur = c[i]
		default:
			d.Error(w, r, http.StatusNotFound, azureNotFound)
			return
		}
	}
	if format == "text" {
		switch c := cur.(type) {
		case string:
			writeBody(w, http.StatusOK, hdrTextUTF8, c)
		case map[string]any:
			// Azure lists a node's children in text format.
			keys := make([]string, 0, len(c))
			for k := range c {
				if _, leaf := c[k].(string); leaf {
					keys = append(keys, k)
				} else {
					keys = append(keys, k+"/")
				}
			}
			sort.Strings(keys)
			writeBody(w, http.StatusOK, hdrTextUTF8, strings.Join(keys, "\n"))
		case []any:
			var lines []string
			for i := range c {
				lines = append(lines, strconv.Itoa(i)+"/")
			}
			writeBody(w, http.StatusOK, hdrTextUTF8, strings.Join(lines, "\n"))
		default:
			d.Error(w, r, http.StatusNotFound, azureNotFound)
		}
		return
	}
	d.writeJSON(w, http.StatusOK, cur)
}

// azureNeedsSource reports whether v has a dhcp4 NIC, whose address may
// have to be the caller's (azureInterfaces).
func azureNeedsSource(v *View) bool {
	for _, in := range nics(v) {
		if in.DHCP4 {
			return true
		}
	}
	return false
}

// sourceIPv4 is the IPv4 address r comes from, "" for any other.
func sourceIPv4(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if a := ap.Addr().Unmap(); err == nil && a.Is4() {
		return a.String()
	}
	return ""
}

// azureRendered is /metadata/instance of one view: its JSON and the same
// as generic maps and slices.
type azureRendered struct {
	body []byte
	tree any
}

// The /metadata/instance document. Azure renders every primitive as a
// string and keeps absent values as empty strings.
type azureDoc struct {
	Compute azureCompute `json:"compute"`
	Network azureNetwork `json:"network"`
}

type azureCompute struct {
	AzEnvironment string           `json:"azEnvironment"`
	Location      string           `json:"location"`
	Name          string           `json:"name"`
	OSProfile     azureOSProfile   `json:"osProfile"`
	OSType        string           `json:"osType"`
	PublicKeys    []azurePublicKey `json:"publicKeys"`
	UserData      *string          `json:"userData,omitempty"`
	VMID          string           `json:"vmId"`
	Zone          string           `json:"zone"`
}

type azureOSProfile struct {
	AdminUsername                 string `json:"adminUsername"`
	ComputerName                  string `json:"computerName"`
	DisablePasswordAuthentication string `json:"disablePasswordAuthentication"`
}

type azurePublicKey struct {
	KeyData string `json:"keyData"`
	Path    string `json:"path"`
}

type azureNetwork struct {
	Interface []azureInterface `json:"interface"`
}

type azureInterface struct {
	IPv4       azureIPv4 `json:"ipv4"`
	IPv6       azureIPv6 `json:"ipv6"`
	MACAddress string    `json:"macAddress"`
}

type azureIPv4 struct {
	IPAddress []azureIPAddress `json:"ipAddress"`
	Subnet    []azureSubnet    `json:"subnet"`
}

type azureIPv6 struct {
	IPAddress []azureIPAddress `json:"ipAddress"`
	Subnet    []azureSubnet    `json:"subnet,omitempty"`
}

type azureIPAddress struct {
	PrivateIPAddress string `json:"privateIpAddress"`
	PublicIPAddress  string `json:"publicIpAddress"`
}

type azureSubnet struct {
	Address string `json:"address"`
	Prefix  string `json:"prefix"`
}

// adminUser is the document's first user: Azure has one admin user per VM.
func adminUser(v *View) (name string, keys []string, password bool) {
	if v.Doc == nil || len(v.Doc.Users) == 0 {
		return "", nil, false
	}
	u := v.Doc.Users[0]
	return u.Name, u.SSHAuthorizedKeys, u.Password != "" || u.PasswordHash != ""
}

// azureInstance is /metadata/instance of v for a caller at src (see
// azureInterfaces).
func azureInstance(v *View, s Settings, apiVersion, src string) azureDoc {
	admin, _, password := adminUser(v)
	out := azureDoc{Compute: azureCompute{
		AzEnvironment: "AzurePublicCloud",
		Location:      s.Region,
		Name:          v.ID,
		OSProfile: azureOSProfile{
			AdminUsername:                 admin,
			ComputerName:                  hostname(v, v.ID),
			DisablePasswordAuthentication: strconv.FormatBool(!password),
		},
		PublicKeys: []azurePublicKey{},
		VMID:       vmUUID(v.ID),
	}}
	for _, k := range sshKeys(v) {
		out.Compute.PublicKeys = append(out.Compute.PublicKeys, azurePublicKey{KeyData: k.key, Path: "/home/" + k.user + "/.ssh/authorized_keys"})
	}
	// userData arrived with api-version 2021-01-01; base64 as on Azure.
	if apiVersion >= "2021-01-01" {
		ud := ""
		if v.Doc != nil && v.Doc.UserData != nil {
			ud = base64.StdEncoding.EncodeToString([]byte(*v.Doc.UserData))
		}
		out.Compute.UserData = &ud
	}
	out.Network.Interface = azureInterfaces(v, src)
	return out
}

// azureInterfaces is network/interface: the document's NICs in its order,
// described as Azure describes a NIC, which is what cloud-init's Azure
// datasource turns into its network config (one ethN per list entry, by
// index; the first address of each family by DHCP, the others static with
// the prefix of subnet[0]). So:
//   - A NIC with static IPv4 addresses lists them, subnet[0] the first's.
//   - A dhcp4 NIC lists the address it has, as Azure does: the next
//     registered IPv4 address that no NIC of the document holds
//     statically, else the caller's source address src (an instance
//     registered by host interface only). cloud-init skips a NIC without
//     any address, leaving a DHCP NIC unconfigured.
//   - A NIC with no address Prewarm can know (a second dhcp4 NIC beyond
//     the registered addresses, a NIC with neither dhcp4 nor addresses)
//     keeps its place with an empty list rather than an invented address:
//     leaving it out would shift every later NIC's index, and so its ethN
//     name, onto another NIC's.
//   - A document without NICs lists none: there is no MAC to describe,
//     and an entry with an empty macAddress makes netplan refuse
//     cloud-init's whole network config.
//
// IPv6 addresses list their subnet too (cloud-init reads subnet[0] for
// every address after the first).
func azureInterfaces(v *View, src string) []azureInterface {
	out := []azureInterface{}
	ns := nics(v)
	if len(ns) == 0 {
		return out
	}
	held := map[netip.Addr]bool{}
	for _, in := range ns {
		v4, _ := prefixes(in)
		for _, p := range v4 {
			held[p.Addr()] = true
		}
	}
	var free []netip.Addr // IPv4 addresses for dhcp4 NICs, in order
	for _, a := range append(append([]string(nil), v.Addresses...), src) {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && !held[ip] {
			held[ip] = true
			free = append(free, ip)
		}
	}
	for _, in := range ns {
		ai := azureInterface{
			IPv4:       azureIPv4{IPAddress: []azureIPAddress{}, Subnet: []azureSubnet{}},
			IPv6:       azureIPv6{IPAddress: []azureIPAddress{}},
			MACAddress: strings.ToUpper(strings.ReplaceAll(in.MAC.String(), ":", "")),
		}
		v4, v6 := prefixes(in)
		for _, p := range v4 {
			ai.IPv4.IPAddress = append(ai.IPv4.IPAddress, azureIPAddress{PrivateIPAddress: p.Addr().String()})
		}
		if len(v4) > 0 {
			ai.IPv4.Subnet = append(ai.IPv4.Subnet, azureSubnetOf(v4[0]))
		} else if in.DHCP4 && len(free) > 0 {
			ai.IPv4.IPAddress = append(ai.IPv4.IPAddress, azureIPAddress{PrivateIPAddress: free[0].String()})
			free = free[1:]
		}
		for _, p := range v6 {
			ai.IPv6.IPAddress = append(ai.IPv6.IPAddress, azureIPAddress{PrivateIPAddress: p.Addr().String()})
		}
		if len(v6) > 0 {
			ai.IPv6.Subnet = []azureSubnet{azureSubnetOf(v6[0])}
		}
		out = append(out, ai)
	}
	return out
}

func azureSubnetOf(p netip.Prefix) azureSubnet {
	m := p.Masked()
	return azureSubnet{Address: m.Addr().String(), Prefix: strconv.Itoa(m.Bits())}
}

// azureOVF renders the final document as the ovf-env.xml Azure hands a
// pre-provisioned VM through /metadata/reprovisiondata, in the layout
// cloud-init's OvfEnvXml parses: the admin user (first user), the host
// name, the user-data as CustomData, the admin's SSH keys. A plaintext
// password goes in UserPassword (the guest hashes it), as on Azure.
//
// A document without users is valid (its users section is absent: leave
// the machine's users as they are), but Azure always names an admin and
// cloud-init's parser requires the UserName element: without it,
// reprovisioning fails. So UserName is always there, empty when there is
// no user: cloud-init then takes no name from it and keeps the image's
// default user, and no user is invented. (Refusing such a publish while
// the Azure dialect is on would refuse a valid document for every guest
// of a default listener, native ones included.)
func azureOVF(v *View) string {
	admin, keys, _ := adminUser(v)
	var pw string
	if v.Doc != nil && len(v.Doc.Users) > 0 {
		pw = v.Doc.Users[0].Password
	}
	esc := xmlEscape
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <ns1:ProvisioningSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:LinuxProvisioningConfigurationSet>
      <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
`)
	b.WriteString("      <ns1:HostName>" + esc(hostname(v, v.ID)) + "</ns1:HostName>\n")
	b.WriteString("      <ns1:UserName>" + esc(admin) + "</ns1:UserName>\n")
	if pw != "" {
		b.WriteString("      <ns1:UserPassword>" + esc(pw) + "</ns1:UserPassword>\n")
	}
	b.WriteString("      <ns1:DisableSshPasswordAuthentication>" + strconv.FormatBool(pw == "") + "</ns1:DisableSshPasswordAuthentication>\n")
	if v.Doc != nil && v.Doc.UserData != nil {
		b.WriteString("      <ns1:CustomData>" + base64.StdEncoding.EncodeToString([]byte(*v.Doc.UserData)) + "</ns1:CustomData>\n")
	}
	if len(keys) > 0 {
		b.WriteString("      <ns1:SSH>\n        <ns1:PublicKeys>\n")
		for _, k := range keys {
			b.WriteString("          <ns1:PublicKey>\n")
			b.WriteString("            <ns1:Path>/home/" + esc(admin) + "/.ssh/authorized_keys</ns1:Path>\n")
			b.WriteString("            <ns1:Value>" + esc(k) + "</ns1:Value>\n")
			b.WriteString("          </ns1:PublicKey>\n")
		}
		b.WriteString("        </ns1:PublicKeys>\n      </ns1:SSH>\n")
	}
	b.WriteString(`    </ns1:LinuxProvisioningConfigurationSet>
  </ns1:ProvisioningSection>
  <ns1:PlatformSettingsSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:PlatformSettings>
      <ns1:KmsServerHostname>kms.core.windows.net</ns1:KmsServerHostname>
      <ns1:ProvisionGuestAgent>false</ns1:ProvisionGuestAgent>
      <ns1:GuestAgentPackageName xsi:nil="true" />
      <ns1:PreprovisionedVm>false</ns1:PreprovisionedVm>
    </ns1:PlatformSettings>
  </ns1:PlatformSettingsSection>
</ns0:Environment>
`)
	return b.String()
}

// xmlEscape is s as character data, exactly as encoding/xml's EscapeText
// writes it (TestXMLEscapeMatchesEncodingXML holds the two equal):
// quotes, '&', '<', '>', tab, newline and carriage return as references,
// invalid UTF-8 and characters XML does not allow as U+FFFD. It is here
// so that encoding/xml is not linked: its package init ran at every
// start of the IMDS (issue 15's idle RSS) for this one function.
func xmlEscape(s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		r, width := utf8.DecodeRuneInString(s[i:])
		i += width
		var esc string
		switch r {
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !xmlChar(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			continue
		}
		b.WriteString(s[last : i-width])
		b.WriteString(esc)
		last = i
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// xmlChar reports whether XML 1.0 allows r in character data (its Char
// production).
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
