package publishdir

import (
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// FuzzPublishFile feeds arbitrary publish-directory files to the parser:
// no panic, every rejection is an error object with a 4xx status, and an
// accepted file has something to apply.
func FuzzPublishFile(f *testing.F) {
	f.Add("vm-1.json", `{"addresses":["10.0.0.1"],"config":{"hostname":"a"}}`)
	f.Add("vm-1.json", `{"hostInterface":"vnet0","labels":{"a":"b"},"config":null}`)
	f.Add("-x.json", `{}`)
	f.Add("vm.json", `{"config":{"users":[{"name":"root","password":"x","passwordHash":"$6$x$y"}]}}`)
	f.Fuzz(func(t *testing.T, name, body string) {
		id, pf, e := parse(name, []byte(body))
		if e != nil {
			if e.HTTPStatus() < 400 || e.HTTPStatus() > 499 || e.ErrorBody().Error == "" {
				t.Fatalf("bad rejection %+v", e)
			}
			return
		}
		if !api.ValidInstanceID(id) {
			t.Fatalf("accepted id %q", id)
		}
		if len(pf.Addresses) == 0 && pf.HostInterface == "" && (len(pf.Config) == 0 || string(pf.Config) == "null") {
			t.Fatal("accepted a file that changes nothing")
		}
	})
}
