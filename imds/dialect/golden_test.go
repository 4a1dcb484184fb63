package dialect

import (
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden pins the wire formats of the dialects' larger answers for
// vm-a's document: go test -run Golden -update rewrites them.
func TestGolden(t *testing.T) {
	h := newHost(t, []string{NameEC2, NameAzure, NameGCE}, Settings{AvailabilityZone: "eu-west-1b", GCEProjectID: "pool-project", TokenKey: []byte("k")})
	fleet(h)
	for _, tc := range []struct {
		file, path string
		hdr        map[string]string
	}{
		{"ec2-meta-data.golden", "/latest/meta-data/", nil},
		{"ec2-identity-document.golden", "/latest/dynamic/instance-identity/document", nil},
		{"azure-instance.golden", "/metadata/instance?api-version=2021-02-01", metadataTrue},
		{"azure-ovf-env.golden", "/metadata/reprovisiondata?api-version=2019-06-01", metadataTrue},
		{"gce-recursive.golden", "/computeMetadata/v1/?recursive=true", map[string]string{"Metadata-Flavor": "Google"}},
		{"gce-recursive-text.golden", "/computeMetadata/v1/instance/?recursive=true&alt=text", map[string]string{"Metadata-Flavor": "Google"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.RemoteAddr = addrA + ":40000"
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			file := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, rec.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got := rec.Body.String(); got != string(want) {
				t.Errorf("answer differs from %s:\n%s", file, got)
			}
		})
	}
}
