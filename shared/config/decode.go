package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Decode parses a config document strictly and validates it. Every unknown
// field, mistyped field and broken rule is reported, with its path, in one
// *ValidationError; a document over MaxDocumentBytes gives ErrTooLarge.
//
// The document is first read into a generic tree and then walked against the
// schema, so that one pass sees every problem; encoding/json alone stops at
// the first unknown or mistyped field.
func Decode(data []byte) (*Document, error) {
	if len(data) > MaxDocumentBytes {
		return nil, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Path: "", Reason: "must be a JSON object: " + jsonReason(err)}}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Fields: []FieldError{{Path: "", Reason: "must hold exactly one JSON object, found data after it"}}}
	}
	w := &walker{}
	d := w.document(tree)
	d.check(w)
	if len(w.errs) > 0 {
		return nil, &ValidationError{Fields: w.errs}
	}
	return d, nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return err.Error()
}

// walker collects field errors while it turns the generic tree into typed
// values. A null anywhere counts as absent (PROTOCOL.md section 1).
type walker struct {
	errs []FieldError
}

func (w *walker) fail(path, format string, args ...any) {
	w.errs = append(w.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// object returns v as an object, reporting unknown fields against known.
func (w *walker) object(path string, v any, known ...string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		w.fail(path, "must be an object, not %s", kind(v))
		return nil, false
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		w.fail(join(path, k), "unknown field")
	}
	return m, true
}

func (w *walker) str(path string, v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", false
	case string:
		return t, true
	}
	w.fail(path, "must be a string, not %s", kind(v))
	return "", false
}

// nonEmpty is str for fields whose empty value would be indistinguishable
// from absence.
func (w *walker) nonEmpty(path string, v any, hint string) string {
	s, ok := w.str(path, v)
	if ok && s == "" {
		w.fail(path, "must not be empty (%s)", hint)
	}
	return s
}

func (w *walker) boolean(path string, v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	}
	w.fail(path, "must be true or false, not %s", kind(v))
	return false
}

func (w *walker) integer(path string, v any) (int64, bool) {
	switch t := v.(type) {
	case nil:
		return 0, false
	case json.Number:
		n, err := strconv.ParseInt(t.String(), 10, 64)
		if err != nil {
			w.fail(path, "must be an integer, not %s", t.String())
			return 0, false
		}
		return n, true
	}
	w.fail(path, "must be an integer, not %s", kind(v))
	return 0, false
}

func (w *walker) list(path string, v any) ([]any, bool) {
	switch t := v.(type) {
	case nil:
		return nil, false
	case []any:
		return t, true
	}
	w.fail(path, "must be an array, not %s", kind(v))
	return nil, false
}

// strings returns nil for an absent list and a non-nil slice for a present
// one, so "absent" and "empty" stay apart.
func (w *walker) strings(path string, v any) []string {
	l, ok := w.list(path, v)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for i, e := range l {
		if s, ok := w.str(index(path, i), e); ok {
			out = append(out, s)
		} else if e == nil {
			w.fail(index(path, i), "must be a string, not null")
		}
	}
	return out
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (w *walker) document(v any) *Document {
	d := &Document{}
	m, ok := w.object("", v, "instanceId", "generation", "partial", "hostname", "timezone", "userData", "users", "network", "sshHostKeys", "reboot")
	if !ok {
		return d
	}
	// instanceId and generation are the IMDS's to stamp: it overwrites a
	// publisher's values, and the agent reads the stamped ones.
	d.InstanceID, _ = w.str("instanceId", m["instanceId"])
	if g, ok := w.integer("generation", m["generation"]); ok {
		if g < 0 {
			w.fail("generation", "must not be negative")
		}
		d.Generation = g
	}
	d.Partial = w.boolean("partial", m["partial"])
	d.Hostname = w.nonEmpty("hostname", m["hostname"], "omit the field to leave the hostname as it is")
	d.Timezone = w.nonEmpty("timezone", m["timezone"], "omit the field to leave the time zone as it is")
	if s, ok := w.str("userData", m["userData"]); ok {
		d.UserData = &s
	}
	if l, ok := w.list("users", m["users"]); ok {
		d.Users = make([]User, 0, len(l))
		for i, e := range l {
			d.Users = append(d.Users, w.user(index("users", i), e))
		}
	}
	if m["network"] != nil {
		d.Network = w.network("network", m["network"])
	}
	if m["sshHostKeys"] != nil {
		d.SSHHostKeys = w.sshHostKeys("sshHostKeys", m["sshHostKeys"])
	}
	d.Reboot = w.nonEmpty("reboot", m["reboot"], "omit the field for the default, never")
	return d
}

func (w *walker) user(path string, v any) User {
	var u User
	m, ok := w.object(path, v, "name", "groups", "sudo", "shell", "sshAuthorizedKeys", "passwordHash", "password")
	if !ok {
		return u
	}
	u.Name, ok = w.str(join(path, "name"), m["name"])
	if !ok && m["name"] == nil {
		w.fail(join(path, "name"), "required")
	}
	u.Groups = w.strings(join(path, "groups"), m["groups"])
	u.Sudo, _ = w.str(join(path, "sudo"), m["sudo"])
	u.Shell, _ = w.str(join(path, "shell"), m["shell"])
	u.SSHAuthorizedKeys = w.strings(join(path, "sshAuthorizedKeys"), m["sshAuthorizedKeys"])
	u.PasswordHash = w.nonEmpty(join(path, "passwordHash"), m["passwordHash"], "omit the field to leave the password as it is")
	u.Password = w.nonEmpty(join(path, "password"), m["password"], "omit the field to leave the password as it is")
	return u
}

func (w *walker) network(path string, v any) *Network {
	n := &Network{}
	m, ok := w.object(path, v, "renewDhcp", "interfaces")
	if !ok {
		return n
	}
	if c, ok := w.integer(join(path, "renewDhcp"), m["renewDhcp"]); ok {
		n.RenewDHCP = &c
	}
	if l, ok := w.list(join(path, "interfaces"), m["interfaces"]); ok {
		n.Interfaces = make([]Interface, 0, len(l))
		for i, e := range l {
			n.Interfaces = append(n.Interfaces, w.iface(index(join(path, "interfaces"), i), e))
		}
	}
	return n
}

func (w *walker) iface(path string, v any) Interface {
	var in Interface
	m, ok := w.object(path, v, "mac", "dhcp4", "addresses", "gateway4", "routes", "mtu", "nameservers", "searchDomains")
	if !ok {
		return in
	}
	if m["mac"] == nil {
		w.fail(join(path, "mac"), "required")
	} else {
		in.MAC, _ = parseField(w, join(path, "mac"), m["mac"], ParseMAC, errMAC.Error())
	}
	in.DHCP4 = w.boolean(join(path, "dhcp4"), m["dhcp4"])
	in.Addresses = parseList(w, join(path, "addresses"), m["addresses"], netip.ParsePrefix, reasonAddress)
	if s := w.nonEmpty(join(path, "gateway4"), m["gateway4"], "omit the field for no default gateway"); s != "" {
		in.Gateway4, _ = parseText(w, join(path, "gateway4"), s, netip.ParseAddr, reasonGateway)
	}
	if l, ok := w.list(join(path, "routes"), m["routes"]); ok {
		in.Routes = make([]Route, 0, len(l))
		for i, e := range l {
			in.Routes = append(in.Routes, w.route(index(join(path, "routes"), i), e))
		}
	}
	if mtu, ok := w.integer(join(path, "mtu"), m["mtu"]); ok {
		if mtu == 0 {
			// Zero would read as absent; say so here, the range rule
			// in check covers every other value.
			w.fail(join(path, "mtu"), "must be between %d and %d", MinMTU, MaxMTU)
		}
		in.MTU = int(mtu)
	}
	in.Nameservers = parseList(w, join(path, "nameservers"), m["nameservers"], netip.ParseAddr, reasonNameserver)
	in.SearchDomains = w.strings(join(path, "searchDomains"), m["searchDomains"])
	return in
}

func (w *walker) route(path string, v any) Route {
	var r Route
	m, ok := w.object(path, v, "to", "via", "metric")
	if !ok {
		return r
	}
	if m["to"] == nil {
		w.fail(join(path, "to"), "required")
	} else {
		r.To, _ = parseField(w, join(path, "to"), m["to"], netip.ParsePrefix, reasonRouteTo)
	}
	if m["via"] == nil {
		w.fail(join(path, "via"), "required")
	} else {
		r.Via, _ = parseField(w, join(path, "via"), m["via"], netip.ParseAddr, reasonVia)
	}
	if n, ok := w.integer(join(path, "metric"), m["metric"]); ok {
		if n < MinRouteMetric || n > math.MaxUint32 {
			// Zero would read as absent, and no metric is negative;
			// the range rule in check covers the rest.
			w.fail(join(path, "metric"), "%s", reasonMetric)
		} else {
			r.Metric = uint32(n)
		}
	}
	return r
}

// parseField reads the string at path and parses it into its typed value:
// the one place a document's address or MAC text is parsed. What does not
// parse is reported with reason (or zoneReason when it carries a zone) and
// gives the zero value.
func parseField[T any](w *walker, path string, v any, parse func(string) (T, error), reason string) (T, bool) {
	s, ok := w.str(path, v)
	if !ok {
		var zero T
		return zero, false
	}
	return parseText(w, path, s, parse, reason)
}

func parseText[T any](w *walker, path, s string, parse func(string) (T, error), reason string) (T, bool) {
	if strings.Contains(s, "%") {
		// netip takes any bytes as a zone; refuse them before parsing,
		// so that no zone reaches a typed value from a document.
		w.fail(path, "%s", zoneReason)
		var zero T
		return zero, false
	}
	t, err := parse(s)
	if err != nil {
		w.fail(path, "%s", reason)
		return t, false
	}
	return t, true
}

// parseList is parseField for a list: nil when absent, and one element per
// entry, the zero value for an entry that does not parse, so that indexes
// stay those of the document.
func parseList[T any](w *walker, path string, v any, parse func(string) (T, error), reason string) []T {
	l, ok := w.list(path, v)
	if !ok {
		return nil
	}
	out := make([]T, len(l))
	for i, e := range l {
		if e == nil {
			w.fail(index(path, i), "must be a string, not null")
			continue
		}
		out[i], _ = parseField(w, index(path, i), e, parse, reason)
	}
	return out
}
