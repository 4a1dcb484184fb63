package server

import (
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// TestPublishedDocumentCanonical: the IMDS stores the document it decoded
// (stamped), so the guest reads address and MAC fields in their canonical
// form (docs/protocol.md section 1); a document already in that form comes
// back byte for byte, and the entity tag is the generation's as before.
func TestPublishedDocumentCanonical(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	h := s.GuestHandler()
	for _, tc := range []struct{ in, want string }{
		{`{"network":{"interfaces":[{"mac":"52:54:00:ab:cd:ef","addresses":["10.0.0.4/24","2001:db8::5/64"],"gateway4":"10.0.0.1","routes":[{"to":"10.2.0.0/16","via":"10.0.0.254"}],"nameservers":["10.0.0.2"]}]}}`,
			`{"instanceId":"vm-a","generation":1,"network":{"interfaces":[{"mac":"52:54:00:ab:cd:ef","addresses":["10.0.0.4/24","2001:db8::5/64"],"gateway4":"10.0.0.1","routes":[{"to":"10.2.0.0/16","via":"10.0.0.254"}],"nameservers":["10.0.0.2"]}]}}`},
		{`{"network":{"interfaces":[{"mac":"52-54-00-AB-CD-EF","addresses":["10.0.0.4/24","2001:DB8:0:0::5/64"],"routes":[{"to":"2001:db8:1::/48","via":"FE80::1"}]}]}}`,
			`{"instanceId":"vm-a","generation":2,"network":{"interfaces":[{"mac":"52:54:00:ab:cd:ef","addresses":["10.0.0.4/24","2001:db8::5/64"],"routes":[{"to":"2001:db8:1::/48","via":"fe80::1"}]}]}}`},
	} {
		gen := mustPublish(t, s, "vm-a", tc.in)
		rec := do(h, req{path: "/metadata/v1/config", from: "10.0.0.1", hdr: md})
		if got := rec.Body.String(); rec.Code != 200 || got != tc.want && got != tc.want+"\n" {
			t.Errorf("generation %d: %d %s\nwant %s", gen, rec.Code, got, tc.want)
		}
		if et := rec.Header().Get(api.HeaderETag); et == "" {
			t.Errorf("generation %d: no ETag", gen)
		} else if tag, err := api.ParseETag(et); err != nil || tag.Generation != gen {
			t.Errorf("generation %d: ETag %s (%+v, %v)", gen, et, tag, err)
		}
	}
}
