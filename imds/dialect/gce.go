package dialect

import (
	"encoding/json"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GCE's metadata server: /computeMetadata/v1/, with Metadata-Flavor:
// Google on requests and responses, ?recursive=true&alt=json|text, and
// wait_for_change long-polls keyed by content ETags.

const (
	gcePrefix = "/computeMetadata/v1"
	// gceDefaultWait and gceMaxWait bound a wait_for_change long-poll, as
	// the native long-poll is bounded; at the end the current value is
	// answered, as GCE does.
	gceDefaultWait = 300 * time.Second
	gceMaxWait     = 300 * time.Second
)

var (
	hdrAppText  = []string{"application/text"}
	hdrAppJSON  = []string{"application/json"}
	hdrGCEsrv   = []string{"Metadata Server for VM"}
	hdrXSS      = []string{"0"}
	hdrFrame    = []string{"SAMEORIGIN"}
	hdrTextHTML = []string{"text/html; charset=UTF-8"}
)

type gceDialect struct{ set *Set }

func (d *gceDialect) Name() string { return NameGCE }

// gceParams are the query parameters GCE understands.
type gceParams struct {
	recursive bool
	alt       string // "", "json" or "text"
	wait      bool
	lastETag  string
	hasLast   bool
	timeout   time.Duration
}

func parseGCEBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "1":
		return true, true
	case "false", "0", "":
		return false, true
	}
	return false, false
}

func parseGCEParams(q url.Values) (gceParams, string) {
	p := gceParams{timeout: gceDefaultWait}
	var ok bool
	if v, has := q["recursive"]; has {
		if p.recursive, ok = parseGCEBool(v[0]); !ok {
			return p, "Invalid value for recursive: " + v[0]
		}
	}
	if v, has := q["alt"]; has {
		switch p.alt = strings.ToLower(v[0]); p.alt {
		case "json", "text":
		default:
			return p, "Invalid value for alt: " + v[0]
		}
	}
	if v, has := q["wait_for_change"]; has {
		if p.wait, ok = parseGCEBool(v[0]); !ok {
			return p, "Invalid value for wait_for_change: " + v[0]
		}
	}
	if v, has := q["last_etag"]; has {
		p.lastETag, p.hasLast = v[0], v[0] != "" && v[0] != "0"
	}
	if v, has := q["timeout_sec"]; has {
		n, err := strconv.Atoi(v[0])
		if err != nil || n <= 0 {
			return p, "Invalid value for timeout_sec: " + v[0]
		}
		// Clamp before converting: n seconds as a Duration overflows
		// (to a negative or tiny wait) for n past about 292 years.
		if n > int(gceMaxWait/time.Second) {
			n = int(gceMaxWait / time.Second)
		}
		p.timeout = time.Duration(n) * time.Second
	}
	return p, ""
}

// Check applies GCE's rules: GET only (405), Metadata-Flavor: Google on
// every /computeMetadata path (403), well-formed query parameters (400).
// The root needs no header: Google's libraries probe it to detect GCE.
func (d *gceDialect) Check(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET, HEAD"}
		d.Error(w, r, http.StatusMethodNotAllowed, "Method "+r.Method+" is not allowed.")
		return false
	}
	if r.URL.Path == "/" {
		return true
	}
	if mf := r.Header["Metadata-Flavor"]; len(mf) != 1 || mf[0] != "Google" {
		d.Error(w, r, http.StatusForbidden, "Your client does not have permission to get URL <code>"+html.EscapeString(r.URL.Path)+"</code> from this server. Missing Metadata-Flavor:Google header.")
		return false
	}
	if _, msg := parseGCEParams(query(r)); msg != "" {
		d.Error(w, r, http.StatusBadRequest, html.EscapeString(msg))
		return false
	}
	return true
}

// Error answers GCE's HTML error page. msg is HTML (callers escape what
// came from the request).
func (d *gceDialect) Error(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if msg == "" || code == http.StatusNotFound {
		msg = "The requested URL <code>" + html.EscapeString(r.URL.Path) + "</code> was not found on this server."
	}
	gceHeaders(w.Header())
	writeBody(w, code, hdrTextHTML, "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error "+
		strconv.Itoa(code)+" ("+http.StatusText(code)+")!!1</title>\n  <p><b>"+strconv.Itoa(code)+".</b> <ins>That’s an error.</ins>\n  <p>"+msg+"\n")
}

func gceHeaders(h http.Header) {
	h["Metadata-Flavor"] = hdrGoogle
	h["Server"] = hdrGCEsrv
	h["X-Xss-Protection"] = hdrXSS
	h["X-Frame-Options"] = hdrFrame
}

// gceAnswer is one rendered response.
type gceAnswer struct {
	code     int // 200, 301 or 404
	ctype    []string
	body     []byte
	etag     string
	location string
}

// Serve answers a /computeMetadata request for inst, long-polling when
// wait_for_change asks to.
func (d *gceDialect) Serve(w http.ResponseWriter, r *http.Request, inst Instance, shutdown <-chan struct{}) {
	h := w.Header()
	gceHeaders(h)
	if r.URL.Path == "/" {
		writeBody(w, http.StatusOK, hdrAppText, "computeMetadata/\n")
		return
	}
	p, _ := parseGCEParams(query(r))
	v, changed := inst.Current()
	a := d.render(r, v, p)
	if p.wait && a.code == http.StatusOK && (!p.hasLast || p.lastETag == a.etag) {
		// Wait for the value to differ from the one the caller has (the
		// current one when it named none).
		have := a.etag
		if p.hasLast {
			have = p.lastETag
		}
		timer := time.NewTimer(p.timeout)
		defer timer.Stop()
	wait:
		for {
			select {
			case <-changed:
				v, changed = inst.Current()
				a = d.render(r, v, p)
				if a.code != http.StatusOK || a.etag != have {
					break wait
				}
			case <-timer.C:
				break wait
			case <-shutdown:
				h.Set("Connection", "close")
				break wait
			case <-r.Context().Done():
				return
			}
		}
	}
	switch a.code {
	case http.StatusOK:
		h["Etag"] = []string{a.etag}
		writeBody(w, http.StatusOK, a.ctype, a.body)
	case http.StatusMovedPermanently:
		h["Location"] = []string{a.location}
		writeBody(w, http.StatusMovedPermanently, hdrTextHTML, "")
	default:
		d.Error(w, r, a.code, "")
	}
}

// render renders the requested path of v's tree.
func (d *gceDialect) render(r *http.Request, v *View, p gceParams) gceAnswer {
	if v.Deleted {
		return gceAnswer{code: http.StatusNotFound}
	}
	path := r.URL.Path
	if path == "/computeMetadata" || path == "/computeMetadata/" {
		return answer("v1/\n", hdrAppText)
	}
	if !strings.HasPrefix(path, gcePrefix) || (len(path) > len(gcePrefix) && path[len(gcePrefix)] != '/') {
		return gceAnswer{code: http.StatusNotFound}
	}
	rest := strings.TrimPrefix(path, gcePrefix)
	root := cached(&v.gce, d.set, func() *node { return d.tree(v) })
	n := root.lookup(rest)
	if n == nil {
		return gceAnswer{code: http.StatusNotFound}
	}
	if n.dir && !strings.HasSuffix(path, "/") && !p.recursive {
		loc := path + "/"
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		return gceAnswer{code: http.StatusMovedPermanently, location: loc}
	}
	// Each node's answers are rendered once per view.
	var mode int
	switch {
	case n.dir && p.recursive && p.alt != "text":
		mode = gceRecursiveJSON
	case n.dir && p.recursive:
		mode = gceRecursiveText
	case n.dir && p.alt == "json":
		mode = gceListingJSON
	case p.alt == "json":
		mode = gceLeafJSON
	default:
		mode = gcePlain
	}
	if a := n.answers[mode].Load(); a != nil {
		return *a
	}
	var a gceAnswer
	switch mode {
	case gceRecursiveJSON, gceLeafJSON:
		a = answer(string(n.appendJSON(nil)), hdrAppJSON)
	case gceRecursiveText:
		var b strings.Builder
		n.appendText(&b, "")
		a = answer(b.String(), hdrAppText)
	case gceListingJSON:
		var names []string
		for _, line := range strings.Split(strings.TrimSuffix(n.listing, "\n"), "\n") {
			if line != "" {
				names = append(names, line)
			}
		}
		if names == nil {
			names = []string{}
		}
		b, _ := json.Marshal(names)
		a = answer(string(b), hdrAppJSON)
	case gcePlain:
		if n.dir {
			a = answer(n.listing, hdrAppText)
		} else {
			a = answer(n.value, hdrAppText)
		}
	}
	n.answers[mode].Store(&a)
	return a
}

// Answer kinds a GCE node caches.
const (
	gcePlain = iota // a listing or a leaf's text
	gceRecursiveJSON
	gceRecursiveText
	gceListingJSON
	gceLeafJSON
	gceModes
)

func answer(body string, ctype []string) gceAnswer {
	b := []byte(body)
	return gceAnswer{code: http.StatusOK, ctype: ctype, body: b, etag: etagOf(b)}
}

// appendJSON renders n as GCE's recursive JSON.
func (n *node) appendJSON(b []byte) []byte {
	switch {
	case !n.dir && n.num:
		return append(b, n.value...)
	case !n.dir:
		s, _ := json.Marshal(n.value)
		return append(b, s...)
	case n.array:
		b = append(b, '[')
		for i, k := range n.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = k.appendJSON(b)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i, k := range n.kids {
			if i > 0 {
				b = append(b, ',')
			}
			key := k.key
			if key == "" {
				key = k.name
			}
			s, _ := json.Marshal(key)
			b = append(b, s...)
			b = append(b, ':')
			b = k.appendJSON(b)
		}
		return append(b, '}')
	}
}

// appendText renders n as GCE's recursive text: one "path value" line per
// leaf.
func (n *node) appendText(b *strings.Builder, prefix string) {
	for _, k := range n.kids {
		if k.dir {
			k.appendText(b, prefix+k.name+"/")
			continue
		}
		b.WriteString(prefix + k.name + " " + k.value + "\n")
	}
}

// tree renders v as GCE's computeMetadata/v1 tree.
func (d *gceDialect) tree(v *View) *node {
	s := d.set.settings
	num := numericID(s.GCEProjectID)
	host := hostname(v, "")
	if host == "" {
		host = gceName(v.ID)
	}
	if !strings.Contains(host, ".") {
		host += ".c." + s.GCEProjectID + ".internal"
	}
	id := leaf("id", numericID(v.ID))
	id.num = true

	attrs := dirNode("attributes")
	if keys := sshKeys(v); len(keys) > 0 {
		var lines []string
		for _, k := range keys {
			lines = append(lines, k.user+":"+k.key)
		}
		attrs.add(leaf("ssh-keys", strings.Join(lines, "\n")))
	}
	if v.Doc != nil && v.Doc.UserData != nil {
		attrs.add(leaf("user-data", *v.Doc.UserData))
	}

	nets := dirNode("network-interfaces")
	nets.key, nets.array = "networkInterfaces", true
	ns := nics(v)
	for i, in := range ns {
		n := dirNode(strconv.Itoa(i), leaf("mac", in.MAC.String()), leaf("network", "projects/"+num+"/networks/default"))
		v4, _ := prefixes(in)
		ip := ""
		if len(v4) > 0 {
			ip = v4[0].Addr().String()
			n.add(leaf("subnetmask", netmask(v4[0].Bits())))
		} else if i == 0 {
			ip = primaryIPv4(v)
		}
		if ip != "" {
			n.add(leaf("ip", ip))
		}
		if in.Gateway4.IsValid() {
			n.add(leaf("gateway", in.Gateway4.String()))
		}
		if in.MTU > 0 {
			mtu := leaf("mtu", strconv.Itoa(in.MTU))
			mtu.num = true
			n.add(mtu)
		}
		nets.add(n)
	}
	if len(ns) == 0 {
		if ip := primaryIPv4(v); ip != "" {
			nets.add(dirNode("0", leaf("ip", ip), leaf("network", "projects/"+num+"/networks/default")))
		}
	}

	nproj := leaf("numeric-project-id", num)
	nproj.key, nproj.num = "numericProjectId", true
	pid := leaf("project-id", s.GCEProjectID)
	pid.key = "projectId"
	root := dirNode("",
		dirNode("instance",
			attrs,
			leaf("hostname", host),
			id,
			leaf("name", gceName(v.ID)),
			nets,
			leaf("zone", "projects/"+num+"/zones/"+s.AvailabilityZone),
		),
		dirNode("project", dirNode("attributes"), nproj, pid),
	)
	return root.finish(true)
}

// gceName is an instance id as a GCE instance name (lower case letters,
// digits and '-').
func gceName(id string) string {
	b := []byte(strings.ToLower(id))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			b[i] = '-'
		}
	}
	return string(b)
}

func netmask(bits int) string {
	var m [4]byte
	for i := 0; i < bits && i < 32; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(m).String()
}
