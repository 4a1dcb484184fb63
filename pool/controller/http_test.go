package controller

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

func TestAdminAPIErrorsAndMetrics(t *testing.T) {
	h := start(t, testConfig(t, 1), nil)
	h.waitFor("1 warm VM", warm(1))
	hs := httptest.NewServer(h.c.Handler())
	defer hs.Close()
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		paths                    []string
	}{
		{"unknown field", "POST", PathClaims, `{"flavor": "small", "document": {}, "color": 1}`, 400, []string{"color"}},
		{"wrong type", "POST", PathClaims, `{"flavor": 7, "document": {}}`, 400, []string{"flavor"}},
		{"not JSON", "POST", PathClaims, `nope`, 400, nil},
		{"document fields", "POST", PathClaims, `{"flavor": "small", "document": {"timezone": "Mars/Base"}}`, 400, []string{"document.timezone"}},
		{"unknown flavor", "POST", PathClaims, `{"flavor": "huge", "document": {}}`, 404, []string{"flavor"}},
		{"release unknown", "DELETE", PathVMs + "/pw-nope-000000", "", 404, []string{"vm"}},
		{"no such route", "GET", "/v1/nothing", "", 404, nil},
		{"wrong method", "PUT", PathStatus, "", 405, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			var e api.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
				t.Fatalf("body is not the error object: %v %+v", err, e)
			}
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Path)
			}
			if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
				t.Errorf("fields %q, want %q", got, tc.paths)
			}
		})
	}
	resp, err := http.Get(hs.URL + PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Flavors) != 1 || st.Flavors[0].Warm != 1 || len(st.VMs) != 1 {
		t.Errorf("status = %+v", st)
	}
	resp, err = http.Get(hs.URL + PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`prewarm_pool_vms{flavor="small",state="warm"} 1`, `prewarm_pool_boots_total{flavor="small",result="ok"} 1`,
		`prewarm_pool_claims_total{flavor="unknown",path="",result="invalid"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
