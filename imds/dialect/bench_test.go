package dialect

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchServe runs one request through the host's rules and the dialect,
// in process; compare with BenchmarkBare (the same bytes from a bare
// handler).
func benchServe(b *testing.B, method, target string, hdr map[string]string) {
	h := &host{}
	set, err := New([]string{NameEC2, NameAzure, NameGCE}, Settings{})
	if err != nil {
		b.Fatal(err)
	}
	h.set = set
	h.register("vm-a", "192.0.2.1", docA())
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = "192.0.2.1:40000"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if t := hdr["X-aws-ec2-metadata-token"]; t == "sign" {
		req.Header.Set("X-aws-ec2-metadata-token", set.signToken("vm-a", 21600))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
	}
	h.seen = nil
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := &discard{h: http.Header{}}
		h.ServeHTTP(w, req)
		if i%1024 == 0 {
			h.mu.Lock()
			h.seen = h.seen[:0]
			h.mu.Unlock()
		}
	}
}

type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkEC2Leaf(b *testing.B) {
	benchServe(b, "GET", "/latest/meta-data/instance-id", nil)
}

func BenchmarkEC2LeafWithToken(b *testing.B) {
	benchServe(b, "GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": "sign"})
}

func BenchmarkEC2Identity(b *testing.B) {
	benchServe(b, "GET", "/latest/dynamic/instance-identity/document", nil)
}

func BenchmarkGCELeaf(b *testing.B) {
	benchServe(b, "GET", "/computeMetadata/v1/instance/hostname", map[string]string{"Metadata-Flavor": "Google"})
}

func BenchmarkGCERecursive(b *testing.B) {
	benchServe(b, "GET", "/computeMetadata/v1/?recursive=true", map[string]string{"Metadata-Flavor": "Google"})
}

func BenchmarkAzureInstance(b *testing.B) {
	benchServe(b, "GET", "/metadata/instance?api-version=2021-02-01", map[string]string{"Metadata": "true"})
}

func BenchmarkAzureLeaf(b *testing.B) {
	benchServe(b, "GET", "/metadata/instance/compute/name?api-version=2021-02-01&format=text", map[string]string{"Metadata": "true"})
}
