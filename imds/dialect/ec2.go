package dialect

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/prewarm/prewarm/shared/config"
)

// EC2 header names (canonical form) and limits.
const (
	ec2TokenHeader    = "X-Aws-Ec2-Metadata-Token"
	ec2TokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	ec2TokenPath      = "api/token"
	ec2MinTokenTTL    = 1
	ec2MaxTokenTTL    = 21600
)

// ec2Versions are the API versions EC2 lists at the root, oldest first;
// each is a path prefix clients may use (cloud-init probes 2021-03-23,
// 2018-09-24, 2016-09-02 and falls back to 2009-04-04). Prewarm serves the
// same tree under each.
var ec2Versions = []string{
	"1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
	"2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01",
	"2011-05-01", "2012-01-12", "2014-02-25", "2014-11-05", "2015-10-20",
	"2016-04-19", "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17",
	"2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03", "2021-03-23",
	"2021-07-15", "2022-09-24", "2024-04-11", "latest",
}

var (
	ec2VersionSet  = setOf(ec2Versions)
	ec2RootListing = strings.Join(ec2Versions, "\n")
)

var (
	hdrPlain  = []string{"text/plain"}
	hdrOctet  = []string{"application/octet-stream"}
	hdrHTML   = []string{"text/html"}
	hdrEC2ws  = []string{"EC2ws"}
	hdrGoogle = []string{"Google"}
)

// ec2Dialect is EC2's instance metadata service, IMDSv1 and IMDSv2.
type ec2Dialect struct {
	set *Set
	// gceRoot: GCE is served too, so the root answer carries GCE's
	// Metadata-Flavor header for Google's detection.
	gceRoot bool
}

func (d *ec2Dialect) Name() string { return NameEC2 }

// owns reports whether path is under one of EC2's version prefixes.
func (d *ec2Dialect) owns(path string) bool {
	v, _ := splitVersion(path)
	return ec2VersionSet[v]
}

// splitVersion splits "/latest/meta-data/x" into "latest" and
// "meta-data/x".
func splitVersion(path string) (version, rest string) {
	path = strings.TrimPrefix(path, "/")
	version, rest, _ = strings.Cut(path, "/")
	return version, rest
}

func isTokenPath(rest string) bool {
	return strings.TrimSuffix(rest, "/") == ec2TokenPath
}

// Check applies EC2's rules that need no instance: PUT only on the token
// path and GET only elsewhere (405), a token PUT on a versioned path
// (403), a token PUT without a TTL of 1 to 21600 seconds (400).
func (d *ec2Dialect) Check(w http.ResponseWriter, r *http.Request) bool {
	version, rest := splitVersion(r.URL.Path)
	if r.URL.Path != "/" && isTokenPath(rest) {
		if r.Method != http.MethodPut {
			w.Header()["Allow"] = []string{http.MethodPut}
			d.Error(w, r, http.StatusMethodNotAllowed, "")
			return false
		}
		if version != "latest" {
			d.Error(w, r, http.StatusForbidden, "")
			return false
		}
		if _, ok := tokenTTL(r); !ok {
			d.Error(w, r, http.StatusBadRequest, "")
			return false
		}
		return true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET, HEAD"}
		d.Error(w, r, http.StatusMethodNotAllowed, "")
		return false
	}
	return true
}

// tokenTTL reads X-aws-ec2-metadata-token-ttl-seconds.
func tokenTTL(r *http.Request) (int, bool) {
	v := r.Header[ec2TokenTTLHeader]
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v[0]))
	if err != nil || n < ec2MinTokenTTL || n > ec2MaxTokenTTL {
		return 0, false
	}
	return n, true
}

// Error answers with EC2's error page; EC2 says nothing more than the
// status, so msg is not shown.
func (d *ec2Dialect) Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h := w.Header()
	h["Server"] = hdrEC2ws
	if d.gceRoot && r.URL.Path == "/" {
		h["Metadata-Flavor"] = hdrGoogle
	}
	writeBody(w, code, hdrHTML, ec2ErrorPage(code))
}

func ec2ErrorPage(code int) string {
	t := strconv.Itoa(code) + " - " + http.StatusText(code)
	return `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
	"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>` + t + `</title>
 </head>
 <body>
  <h1>` + t + `</h1>
 </body>
</html>
`
}

// writeBody answers with a complete body and its length.
func writeBody[B string | []byte](w http.ResponseWriter, code int, ctype []string, body B) {
	h := w.Header()
	h["Content-Type"] = ctype
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	if len(body) > 0 {
		w.Write([]byte(body))
	}
}

// Serve answers an EC2 request for inst: a token PUT, or a read checked
// against the token rules first (a token that is present must be valid in
// either mode; none at all is a 401 only when tokens are required).
func (d *ec2Dialect) Serve(w http.ResponseWriter, r *http.Request, inst Instance, _ <-chan struct{}) {
	v, _ := inst.Current()
	h := w.Header()
	h["Server"] = hdrEC2ws
	if v.Deleted {
		d.Error(w, r, http.StatusNotFound, "unknown instance")
		return
	}
	_, rest := splitVersion(r.URL.Path)
	if r.URL.Path != "/" && isTokenPath(rest) {
		d.issueToken(w, r, v)
		return
	}
	if tok := r.Header[ec2TokenHeader]; len(tok) > 0 {
		if len(tok) != 1 || !d.set.checkToken(v, tok[0]) {
			d.Error(w, r, http.StatusUnauthorized, "")
			return
		}
	} else if d.set.settings.EC2Tokens == TokensRequired {
		d.Error(w, r, http.StatusUnauthorized, "")
		return
	}
	if r.URL.Path == "/" {
		if d.gceRoot {
			h["Metadata-Flavor"] = hdrGoogle
		}
		writeBody(w, http.StatusOK, hdrPlain, ec2RootListing)
		return
	}
	root := cached(&v.ec2, d.set, func() *node { return d.tree(v) })
	n := root.lookup(rest)
	if n == nil {
		d.Error(w, r, http.StatusNotFound, "")
		return
	}
	switch {
	case n.dir:
		writeBody(w, http.StatusOK, hdrPlain, n.listing)
	case strings.TrimSuffix(rest, "/") == "user-data":
		writeBody(w, http.StatusOK, hdrOctet, n.value)
	default:
		writeBody(w, http.StatusOK, hdrPlain, n.value)
	}
}

// issueToken answers a token PUT with a token bound to v's instance. The
// response leaves with IP TTL 1 (EC2's default PUT response hop limit), so
// a client one routing hop further away (a container behind a NAT, a
// proxy) never receives it.
func (d *ec2Dialect) issueToken(w http.ResponseWriter, r *http.Request, v *View) {
	ttl, ok := tokenTTL(r)
	if !ok { // Check guarantees it; kept for callers that skip Check
		d.Error(w, r, http.StatusBadRequest, "")
		return
	}
	tok := d.set.signToken(v.ID, ttl)
	if err := setHopLimit(connFrom(r.Context()), 1); err != nil {
		// Failing closed: a token that could travel further than one hop
		// defeats the point of the hop limit.
		d.set.logf("EC2 token for instance %q not issued: %v", v.ID, err)
		d.Error(w, r, http.StatusInternalServerError, "")
		return
	}
	h := w.Header()
	h[ec2TokenTTLHeader] = []string{strconv.Itoa(ttl)}
	writeBody(w, http.StatusOK, hdrPlain, tok)
}

// tree renders one version's tree: dynamic/, meta-data/ and user-data.
func (d *ec2Dialect) tree(v *View) *node {
	s := d.set.settings
	ip := primaryIPv4(v)
	fallback := v.ID
	if ip != "" {
		fallback = "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + s.Region + ".compute.internal"
	}
	hn := hostname(v, fallback)

	md := dirNode("meta-data",
		leaf("hostname", hn),
		leaf("instance-id", v.ID),
		leaf("local-hostname", hn),
		dirNode("placement",
			leaf("availability-zone", s.AvailabilityZone),
			leaf("region", s.Region),
		),
	)
	if ip != "" {
		md.add(leaf("local-ipv4", ip))
	}
	if ns := nics(v); len(ns) > 0 {
		md.add(leaf("mac", ns[0].MAC.String()))
		macs := dirNode("macs")
		for i, in := range ns {
			macs.add(ec2Interface(i, in, hn))
		}
		md.add(dirNode("network", dirNode("interfaces", macs)))
	}
	if keys := sshKeys(v); len(keys) > 0 {
		pk := dirNode("public-keys")
		seen := map[string]int{}
		for i, k := range keys {
			seen[k.user]++
			name := k.user
			if n := seen[k.user]; n > 1 {
				name += "-" + strconv.Itoa(n)
			}
			idx := strconv.Itoa(i)
			key := dirNode(idx, leaf("openssh-key", k.key))
			key.label = idx + "=" + name
			pk.add(key)
		}
		pk.array = true // keep 0, 1, ... 10 in numeric order
		md.add(pk)
	}

	dyn := dirNode("dynamic", dirNode("instance-identity", leaf("document", ec2IdentityDocument(v, ip, s))))
	// A version lists its parts without the directory slash.
	md.label, dyn.label = md.name, dyn.name
	root := dirNode("", md, dyn)
	if v.Doc != nil && v.Doc.UserData != nil {
		root.add(leaf("user-data", *v.Doc.UserData))
	}
	return root.finish(false)
}

// ec2Interface is network/interfaces/macs/<mac>/.
func ec2Interface(i int, in config.Interface, hn string) *node {
	n := dirNode(in.MAC.String(),
		leaf("device-number", strconv.Itoa(i)),
		leaf("local-hostname", hn),
		leaf("mac", in.MAC.String()),
	)
	v4, v6 := prefixes(in)
	if len(v4) > 0 {
		var ips []string
		for _, p := range v4 {
			ips = append(ips, p.Addr().String())
		}
		n.add(leaf("local-ipv4s", strings.Join(ips, "\n")),
			leaf("subnet-ipv4-cidr-block", v4[0].Masked().String()))
	}
	if len(v6) > 0 {
		var ips []string
		blocks := map[netip.Prefix]bool{}
		var bl []string
		for _, p := range v6 {
			ips = append(ips, p.Addr().String())
			if m := p.Masked(); !blocks[m] {
				blocks[m] = true
				bl = append(bl, m.String())
			}
		}
		n.add(leaf("ipv6s", strings.Join(ips, "\n")),
			leaf("subnet-ipv6-cidr-blocks", strings.Join(bl, "\n")))
	}
	return n
}

// ec2IdentityDocument is dynamic/instance-identity/document in EC2's
// layout (keys in its order, " : " separators). Fields Prewarm cannot know
// (account, image, instance type, launch time) are left out rather than
// invented; the AWS SDK decodes the document either way.
func ec2IdentityDocument(v *View, ip string, s Settings) string {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	var b strings.Builder
	b.WriteString("{\n")
	b.WriteString(`  "availabilityZone" : ` + q(s.AvailabilityZone) + ",\n")
	b.WriteString(`  "billingProducts" : null,` + "\n")
	b.WriteString(`  "devpayProductCodes" : null,` + "\n")
	b.WriteString(`  "marketplaceProductCodes" : null,` + "\n")
	b.WriteString(`  "instanceId" : ` + q(v.ID) + ",\n")
	b.WriteString(`  "kernelId" : null,` + "\n")
	if ip != "" {
		b.WriteString(`  "privateIp" : ` + q(ip) + ",\n")
	}
	b.WriteString(`  "ramdiskId" : null,` + "\n")
	b.WriteString(`  "region" : ` + q(s.Region) + ",\n")
	b.WriteString(`  "version" : "2017-09-30"` + "\n")
	b.WriteString("}")
	return b.String()
}
