package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/shared/api"
)

func dialectSet(t *testing.T, names ...string) *dialect.Set {
	t.Helper()
	set, err := dialect.New(names, dialect.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestDialectRules runs the cloud dialects through the server's identity,
// forwarding, rate-limit and isolation rules.
func TestDialectRules(t *testing.T) {
	s := newTestServer(t, Options{Rate: 0.001, Burst: 3, Dialects: dialectSet(t, "native", "ec2", "azure", "gce")})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	mustPublish(t, s, "vm-a", `{"hostname":"host-a"}`)
	mustPublish(t, s, "vm-b", `{"hostname":"host-b"}`)
	h := s.GuestHandler()
	gce := map[string]string{"Metadata-Flavor": "Google"}
	tests := []struct {
		name string
		r    req
		code int
		body string
	}{
		{"ec2 instance-id", req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}, 200, "vm-a"},
		{"ec2 other instance", req{path: "/latest/meta-data/instance-id", from: "10.0.0.2"}, 200, "vm-b"},
		{"ec2 unknown caller", req{path: "/latest/meta-data/instance-id", from: "10.0.0.9"}, 404, ""},
		{"ec2 forwarded", req{path: "/latest/meta-data/instance-id", from: "10.0.0.1", hdr: map[string]string{"X-Forwarded-For": "10.0.0.2"}}, 403, ""},
		{"gce without its header: dialect rule first", req{path: "/computeMetadata/v1/instance/hostname", from: "10.0.0.9"}, 403, ""},
		{"gce hostname", req{path: "/computeMetadata/v1/instance/hostname", from: "10.0.0.2", hdr: gce}, 200, "host-b"},
		{"azure", req{path: "/metadata/instance?api-version=2021-02-01", from: "10.0.0.1", hdr: md}, 200, "vm-a"},
		{"native alongside", req{path: api.PathInstance, from: "10.0.0.1", hdr: md}, 200, "vm-a"},
		{"rate limit on a dialect path", req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}, 429, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.r)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Fatalf("%d %q, want %d with %q", rec.Code, rec.Body.String(), tt.code, tt.body)
			}
			if strings.Contains(rec.Body.String(), map[string]string{"10.0.0.1": "host-b", "10.0.0.2": "host-a"}[tt.r.from]) && tt.r.from != "10.0.0.9" {
				t.Fatal("another instance's data")
			}
			if tt.code == 429 && rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		})
	}
}

func TestDialectsWithoutNative(t *testing.T) {
	s := newTestServer(t, Options{Dialects: dialectSet(t, "ec2")})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	h := s.GuestHandler()
	if rec := do(h, req{path: api.PathInstance, from: "10.0.0.1", hdr: md}); rec.Code != http.StatusNotFound {
		t.Fatalf("native path with native off: %d", rec.Code)
	}
	if rec := do(h, req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}); rec.Code != 200 || rec.Body.String() != "vm-a" {
		t.Fatalf("ec2: %d %q", rec.Code, rec.Body.String())
	}
}
