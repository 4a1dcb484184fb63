package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// TestAdminRoutes: the admin router's own answers (PROTOCOL.md section 3),
// every one an error object: 405 with Allow for a method a path does not
// take (HEAD too where GET is allowed alone), 404 for a path that names
// nothing (also one ServeMux would clean and redirect), 400 for an id that
// breaks the id pattern, checked after the method.
func TestAdminRoutes(t *testing.T) {
	s := newTestServer(t, Options{})
	h := s.AdminHandler()
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.7"}})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	tests := []struct {
		method, path string
		code         int
		allow        string // for 405
		errText      string
	}{
		{"GET", "/healthz", 200, "", ""},
		{"HEAD", "/healthz", 200, "", ""},
		{"POST", "/healthz", 405, "GET, HEAD", "method POST is not allowed on /healthz (allowed: GET, HEAD)"},
		{"HEAD", "/metrics", 200, "", ""},
		{"DELETE", "/metrics", 405, "GET, HEAD", "not allowed"},
		{"GET", "/v1/instances", 200, "", ""},
		{"HEAD", "/v1/instances", 405, "GET", "not allowed"},
		{"PUT", "/v1/instances", 405, "GET", "not allowed"},
		{"GET", "/v1/instances/vm-1", 200, "", ""},
		{"GET", "/v1/instances/vm-1/", 200, "", ""},
		{"HEAD", "/v1/instances/vm-1", 405, "GET, PUT, DELETE", "not allowed"},
		{"POST", "/v1/instances/vm-1", 405, "GET, PUT, DELETE", "method POST is not allowed on /v1/instances/vm-1 (allowed: GET, PUT, DELETE)"},
		{"PATCH", "/v1/instances/-bad", 405, "GET, PUT, DELETE", "not allowed"},
		{"GET", "/v1/instances/-bad", 400, "", "invalid instance id"},
		{"DELETE", "/v1/instances/" + strings.Repeat("a", 129), 400, "", "invalid instance id"},
		{"GET", "/v1/instances/a%2Fb", 400, "", `invalid instance id "a/b"`},
		{"GET", "/v1/instances/vm-9", 404, "", "not registered"},
		{"GET", "/v1/instances/vm-1/config", 200, "", ""},
		{"HEAD", "/v1/instances/vm-1/config", 405, "GET, PUT", "not allowed"},
		{"DELETE", "/v1/instances/vm-1/config", 405, "GET, PUT", "not allowed"},
		{"PUT", "/v1/instances/-bad/config", 400, "", "invalid instance id"},
		{"GET", "/v1/instances/vm-1/status", 200, "", ""},
		{"POST", "/v1/instances/vm-1/status", 405, "GET", "not allowed"},
		{"GET", "/v1/instances/-bad/status", 400, "", "invalid instance id"},
		{"GET", "/", 404, "", "no such path: /"},
		{"GET", "/v1", 404, "", "no such path"},
		{"GET", "/v1/instances/", 404, "", "no such path"},
		{"GET", "/v1/instances/vm-1/other", 404, "", "no such path"},
		{"GET", "/v1/instances/vm-1/config/", 404, "", "no such path"},
		{"GET", "/v1/instances/vm-1/config/x", 404, "", "no such path"},
		{"POST", "/v1/nothing", 404, "", "no such path"},
		{"GET", "/v1//instances", 404, "", "no such path"},
		{"PUT", "/v1/instances/x/../vm-1", 404, "", "no such path"},
		{"GET", "/v1/instances/./vm-1", 404, "", "no such path"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := req{method: tt.method, path: tt.path}
			if tt.method == http.MethodPut {
				r.body = `{}`
			}
			rec := do(h, r)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tt.code, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if tt.code >= 400 {
				if e := errBody(t, rec); !strings.Contains(e.Error, tt.errText) {
					t.Errorf("error %q does not contain %q", e.Error, tt.errText)
				}
			}
		})
	}
}
