package server

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// requestCount reads prewarm_imds_requests_total for one label set.
func requestCount(s *Server, apiName, route string, code int) float64 {
	return s.m.requests.WithLabelValues(apiName, route, strconv.Itoa(code)).Value()
}

// The route label of an admin request is the pattern the admin mux matched,
// so a new admin route is labelled without a second list to keep in step;
// paths that match no route share one label, so a caller cannot grow the
// label set.
func TestRouteLabelIsTheMatchedPattern(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.4"}})
	mustPublish(t, s, "vm-1", `{"hostname":"a"}`)
	for _, r := range []req{
		{path: "/v1/instances/vm-1"},
		{path: "/v1/instances/vm-1/"},
		{path: "/v1/instances/vm-1/config"},
		{path: "/v1/instances/vm-1/status"},
		{method: http.MethodPost, path: "/v1/instances/vm-1"},
		{path: "/v1/no/such/thing"},
		{path: "/v1/instances/a/b/c"},
	} {
		do(s.AdminHandler(), r)
	}
	if rec := do(s.GuestHandler(), req{path: api.PathConfig, from: "10.0.0.4", hdr: md}); rec.Code != 200 {
		t.Fatalf("guest GET = %d %s", rec.Code, rec.Body)
	}
	for _, c := range []struct {
		api, route string
		code       int
		want       float64
	}{
		{"admin", api.PathInstance1, 200, 2},
		{"admin", api.PathInstanceConfig, 200, 1},
		{"admin", api.PathInstanceStatus, 200, 1},
		{"admin", api.PathInstance1, 405, 1},
		{"admin", "other", 404, 2},
		{"guest", api.PathConfig, 200, 1},
	} {
		if got := requestCount(s, c.api, c.route, c.code); got != c.want {
			t.Errorf("requests{api=%q route=%q code=%d} = %v, want %v", c.api, c.route, c.code, got, c.want)
		}
	}
}
