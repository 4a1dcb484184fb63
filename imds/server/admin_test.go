package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

func TestAdminAPI(t *testing.T) {
	s := newTestServer(t, Options{})
	h := s.AdminHandler()
	big := `{"userData":"` + strings.Repeat("x", config.MaxDocumentBytes) + `"}`
	steps := []struct {
		name    string
		r       req
		code    int
		errText string
		check   func(t *testing.T, body string)
	}{
		{"register", req{method: "PUT", path: "/v1/instances/vm-1", body: `{"addresses":["10.0.0.4","::ffff:10.0.0.5"],"labels":{"pool":"a"}}`}, 201, "", func(t *testing.T, b string) {
			if !strings.Contains(b, `"addresses":["10.0.0.4","10.0.0.5"]`) {
				t.Fatalf("addresses not canonical: %s", b)
			}
		}},
		{"re-register updates", req{method: "PUT", path: "/v1/instances/vm-1", body: `{"addresses":["10.0.0.4"],"hostInterface":"vnet1"}`}, 200, "", nil},
		{"invalid id", req{method: "PUT", path: "/v1/instances/-bad", body: `{"addresses":["10.0.0.9"]}`}, 400, "invalid instance id", nil},
		{"id too long", req{method: "PUT", path: "/v1/instances/" + strings.Repeat("a", 129), body: `{"addresses":["10.0.0.9"]}`}, 400, "invalid instance id", nil},
		{"neither address nor interface", req{method: "PUT", path: "/v1/instances/vm-2", body: `{}`}, 400, "invalid registration", nil},
		{"bad address", req{method: "PUT", path: "/v1/instances/vm-2", body: `{"addresses":["10.0.0.300","0.0.0.0"],"hostInterface":"a/b"}`}, 400, "invalid registration", func(t *testing.T, b string) {
			var e api.Error
			json.Unmarshal([]byte(b), &e)
			if len(e.Fields) != 3 {
				t.Fatalf("want 3 field errors: %s", b)
			}
		}},
		{"unknown field", req{method: "PUT", path: "/v1/instances/vm-2", body: `{"adresses":["10.0.0.9"]}`}, 400, `unknown field "adresses"`, nil},
		{"409 address", req{method: "PUT", path: "/v1/instances/vm-2", body: `{"addresses":["10.0.0.4"]}`}, 409, `address 10.0.0.4 belongs to instance "vm-1"`, nil},
		{"409 interface", req{method: "PUT", path: "/v1/instances/vm-2", body: `{"hostInterface":"vnet1"}`}, 409, `host interface "vnet1" belongs to instance "vm-1"`, nil},
		{"publish unregistered", req{method: "PUT", path: "/v1/instances/vm-2/config", body: `{}`}, 404, `instance "vm-2" is not registered`, nil},
		{"publish invalid", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{"hostname":"a","bogus":1}`}, 400, "invalid config", nil},
		{"publish not JSON", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `hello`}, 400, "invalid config", nil},
		{"publish too large", req{method: "PUT", path: "/v1/instances/vm-1/config", body: big}, 413, "exceeds 262144 bytes", nil},
		{"bad If-Match", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{}`, hdr: map[string]string{"If-Match": "soon"}}, 400, "If-Match", nil},
		{"If-Match 0 on nothing", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{"partial":true,"users":[{"name":"alice","password":"s3cret"}]}`, hdr: map[string]string{"If-Match": `"0"`}}, 200, "", func(t *testing.T, b string) {
			if strings.TrimSpace(b) != `{"generation":1}` {
				t.Fatalf("body %s", b)
			}
		}},
		{"If-Match 0 again", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{}`, hdr: map[string]string{"If-Match": `"0"`}}, 412, `If-Match "0" does not match the current generation "1"`, nil},
		{"If-Match current", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{"users":[{"name":"alice","password":"s3cret"}],"generation":99,"instanceId":"evil"}`, hdr: map[string]string{"If-Match": `"1"`}}, 200, "", nil},
		{"read back redacted", req{path: "/v1/instances/vm-1/config"}, 200, "", func(t *testing.T, b string) {
			if strings.Contains(b, "s3cret") || !strings.Contains(b, `"password":"REDACTED"`) || !strings.Contains(b, `"generation":2`) || !strings.Contains(b, `"instanceId":"vm-1"`) {
				t.Fatalf("read-back: %s", b)
			}
		}},
		{"get instance", req{path: "/v1/instances/vm-1"}, 200, "", func(t *testing.T, b string) {
			var in api.Instance
			json.Unmarshal([]byte(b), &in)
			if in.Generation != 2 || in.HostInterface != "vnet1" || len(in.Addresses) != 1 {
				t.Fatalf("%s", b)
			}
		}},
		{"list", req{path: "/v1/instances"}, 200, "", func(t *testing.T, b string) {
			if !strings.Contains(b, `"instances":[{"id":"vm-1"`) {
				t.Fatalf("%s", b)
			}
		}},
		{"405", req{method: "POST", path: "/v1/instances/vm-1"}, 405, "not allowed", nil},
		{"404 path", req{path: "/v1/nothing"}, 404, "no such path", nil},
		{"404 subpath", req{path: "/v1/instances/vm-1/other"}, 404, "no such path", nil},
		{"get unknown", req{path: "/v1/instances/vm-9"}, 404, "not registered", nil},
		{"status none", req{path: "/v1/instances/vm-1/status"}, 200, "", func(t *testing.T, b string) {
			if strings.TrimSpace(b) != `{"instanceId":"vm-1","reports":[]}` {
				t.Fatalf("%s", b)
			}
		}},
		{"status bad after", req{path: "/v1/instances/vm-1/status?after=-1"}, 400, "after", nil},
		{"status wait 304", req{path: "/v1/instances/vm-1/status?wait=true&timeout=0.05"}, 304, "", nil},
		{"delete", req{method: "DELETE", path: "/v1/instances/vm-1"}, 204, "", nil},
		{"delete again", req{method: "DELETE", path: "/v1/instances/vm-1"}, 404, "not registered", nil},
		{"address free after delete", req{method: "PUT", path: "/v1/instances/vm-2", body: `{"addresses":["10.0.0.4"],"hostInterface":"vnet1"}`}, 201, "", nil},
		{"re-register vm-1", req{method: "PUT", path: "/v1/instances/vm-1", body: `{"addresses":["10.0.0.8"]}`}, 201, "", nil},
		{"config gone after delete", req{path: "/v1/instances/vm-1/config"}, 404, "no config published", nil},
		{"If-Match 0 after re-register", req{method: "PUT", path: "/v1/instances/vm-1/config", body: `{}`, hdr: map[string]string{"If-Match": `"0"`}}, 200, "", func(t *testing.T, b string) {
			if strings.TrimSpace(b) != `{"generation":3}` {
				t.Fatalf("generation reused after delete: %s", b)
			}
		}},
		{"healthz", req{path: "/healthz"}, 200, "", nil},
		{"metrics", req{path: "/metrics"}, 200, "", func(t *testing.T, b string) {
			for _, m := range []string{"prewarm_imds_requests_total", "prewarm_imds_publishes_total 3", "prewarm_imds_instances 2", "prewarm_imds_publish_rejects_total", "go_goroutines"} {
				if !strings.Contains(b, m) {
					t.Errorf("metrics lack %q", m)
				}
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			rec := do(h, st.r)
			if rec.Code != st.code {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, st.code, rec.Body.String())
			}
			if st.code >= 400 {
				if e := errBody(t, rec); !strings.Contains(e.Error, st.errText) {
					t.Fatalf("error %q does not contain %q", e.Error, st.errText)
				}
			}
			if st.check != nil {
				st.check(t, rec.Body.String())
			}
		})
	}
}

func TestAdminStatusLongPoll(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	h, g := s.AdminHandler(), s.GuestHandler()
	post := func(seq int, state string) {
		body := fmt.Sprintf(`{"seq":%d,"time":"2026-11-21T10:00:00Z","generation":1,"state":%q}`, seq, state)
		if rec := do(g, req{method: "POST", path: api.PathStatus, from: "10.0.0.1", hdr: md, body: body}); rec.Code != 204 {
			t.Fatalf("post status: %d %s", rec.Code, rec.Body.String())
		}
	}
	post(1, "waiting")
	type res struct {
		code int
		h    api.StatusHistory
	}
	ch := make(chan res, 1)
	go func() {
		rec := do(h, req{path: "/v1/instances/vm-1/status?wait=true&after=1&timeout=10"})
		var r res
		r.code = rec.Code
		json.Unmarshal(rec.Body.Bytes(), &r.h)
		ch <- r
	}()
	for i := 0; i < 200 && gaugeValue(s, "admin") < 1; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	post(2, "partial-ready")
	select {
	case r := <-ch:
		if r.code != 200 || len(r.h.Reports) != 1 || r.h.Reports[0].State != "partial-ready" || r.h.InstanceID != "vm-1" {
			t.Fatalf("%+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("status long-poll not woken")
	}
	rec := do(h, req{path: "/v1/instances/vm-1/status"})
	var all api.StatusHistory
	json.Unmarshal(rec.Body.Bytes(), &all)
	if len(all.Reports) != 2 || all.Reports[0].Seq != 1 {
		t.Fatalf("history %+v", all)
	}
}

func TestRequireBearer(t *testing.T) {
	s := newTestServer(t, Options{})
	h := RequireBearer("tok-123", s.AdminHandler())
	tests := []struct {
		name, path, auth string
		code             int
	}{
		{"no token", "/v1/instances", "", 401},
		{"wrong token", "/v1/instances", "Bearer tok-124", 401},
		{"wrong scheme", "/v1/instances", "Basic tok-123", 401},
		{"right token", "/v1/instances", "Bearer tok-123", 200},
		{"healthz open", "/healthz", "", 200},
		{"metrics closed", "/metrics", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			rec := do(h, req{path: tt.path, hdr: hdr})
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d", rec.Code, tt.code)
			}
			if tt.code == 401 {
				errBody(t, rec)
			}
		})
	}
}

func TestRecovererAnswersPanics(t *testing.T) {
	s := newTestServer(t, Options{})
	h := s.recoverer("test", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := do(h, req{path: "/x"})
	if rec.Code != 500 || errBody(t, rec).Error != "internal error" {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

func TestPublishConcurrentGenerations(t *testing.T) {
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	const n = 20
	gens := make(chan int64, n)
	for i := 0; i < n; i++ {
		go func() {
			g, err := s.Publish(context.Background(), "vm-1", []byte(`{}`), nil)
			if err != nil {
				t.Error(err)
			}
			gens <- g
		}()
	}
	seen := map[int64]bool{}
	for i := 0; i < n; i++ {
		g := <-gens
		if seen[g] {
			t.Fatalf("generation %d given twice", g)
		}
		seen[g] = true
	}
	if in, _ := s.Instance("vm-1"); in.Generation != n {
		t.Fatalf("generation %d, want %d", in.Generation, n)
	}
}
