package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must never panic, must
// either return a document or a *ValidationError / ErrTooLarge, and every
// document it accepts must encode, decode again and still validate.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"users":[{}]}`, `{"network":{"interfaces":[{"routes":[{}]}]}}`, `{"hostname":"a.b","timezone":"UTC"}`, `{"generation":1e400}`,
		// Hostile values of issue 13: zones carrying shell and config
		// syntax in every address field, IP-literal host names, a zone
		// name that is the machine's own /etc/localtime.
		`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","routes":[{"to":"2001:db8::/64","via":"fe80::1%x;touch /tmp/pwned"}]}]}}`,
		`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","nameservers":["fe80::1%a\nnameserver 1.2.3.4"],"gateway4":"fe80::1%eth0"}]}}`,
		`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","addresses":["fe80::5%eth0/64"],"routes":[{"to":"fe80::%x/64","via":"fe80::1"}]}]}}`,
		`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","searchDomains":["a b","x\ny",";","'\""]}]}}`,
		// Non-canonical forms the canonical encoding must round-trip.
		`{"network":{"interfaces":[{"mac":"52-54-00-AB-CD-EF","addresses":["10.0.0.4/24","2001:DB8:0:0::5/64"],"routes":[{"to":"::/0","via":"FE80::1"}],"nameservers":["::ffff:10.0.0.2"]}]}}`,
		// Route metrics: bounds, and routes to one network that clash.
		`{"network":{"interfaces":[{"mac":"52:54:00:12:34:56","gateway4":"10.0.0.1","routes":[{"to":"0.0.0.0/0","via":"10.0.0.2","metric":1},{"to":"0.0.0.0/0","via":"10.0.0.3"},{"to":"10.2.0.0/16","via":"10.0.0.9","metric":9999},{"to":"10.2.0.0/16","via":"10.0.0.9","metric":0},{"to":"10.2.0.0/16","via":"10.0.0.8","metric":-1e3}]}]}}`,
		`{"hostname":"10.0.0.1"}`, `{"hostname":"127.1"}`, `{"hostname":"0x7f000001"}`, `{"timezone":"localtime"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if ve != nil && len(ve.Fields) == 0 {
				t.Fatal("ValidationError without fields")
			}
			return
		}
		checkAccepted(t, d)
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal of an accepted document: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decoding an accepted document: %v\n%s", err, b)
		}
		// Round trip: the canonical encoding decodes to equal typed
		// values, and encodes to the same bytes.
		if !reflect.DeepEqual(again, d) {
			t.Fatalf("decode → encode → decode changed the document:\n%+v\n%+v", d, again)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b2, b) {
			t.Fatalf("the canonical encoding is not stable:\n%s\n%s", b, b2)
		}
	})
}

// checkAccepted asserts what every accepted document guarantees to the
// renderers of the agents: no address field carries a zone or anything but
// the address, and the host name is not an IP literal.
func checkAccepted(t *testing.T, d *Document) {
	t.Helper()
	if _, err := netip.ParseAddr(d.Hostname); err == nil || strings.Trim(d.Hostname, "0123456789.") == "" && d.Hostname != "" {
		t.Fatalf("accepted an IP-literal host name %q", d.Hostname)
	}
	if strings.EqualFold(d.Timezone, "localtime") {
		t.Fatalf("accepted the time zone %q", d.Timezone)
	}
	if d.Network == nil {
		return
	}
	plain := func(what string, v encoding.TextMarshaler) {
		b, err := v.MarshalText()
		if s := string(b); err != nil || strings.ContainsAny(s, "% \t\r\n;'\"\\$`") {
			t.Fatalf("accepted %s %q", what, s)
		}
	}
	for _, in := range d.Network.Interfaces {
		plain("mac", in.MAC)
		for _, a := range in.Addresses {
			plain("address", a)
		}
		plain("gateway4", in.Gateway4)
		for _, r := range in.Routes {
			plain("route to", r.To)
			plain("route via", r.Via)
		}
		for _, n := range in.Nameservers {
			plain("nameserver", n)
		}
		for _, s := range in.SearchDomains {
			if strings.ContainsAny(s, "% \t\r\n;'\"\\$`") {
				t.Fatalf("accepted search domain %q", s)
			}
		}
	}
}
