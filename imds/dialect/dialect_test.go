package dialect

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{DefaultList, "native,ec2,azure,gce", false},
		{"gce, EC2 ,gce", "gce,ec2", false},
		{"native", "native", false},
		{"", "", true},
		{",", "", true},
		{"ec2,openstack", "", true},
	} {
		got, err := ParseList(tc.in)
		if (err != nil) != tc.err || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseList(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := ParseTokenMode("sometimes"); err == nil {
		t.Error("ParseTokenMode(sometimes) succeeded")
	}
	if m, err := ParseTokenMode("required"); err != nil || m != TokensRequired || m.String() != "required" {
		t.Errorf("ParseTokenMode(required) = %v, %v", m, err)
	}
}

func TestNewSettings(t *testing.T) {
	set, err := New([]string{NameNative, NameEC2}, Settings{AvailabilityZone: "us-west-2c"})
	if err != nil {
		t.Fatal(err)
	}
	s := set.Settings()
	if s.Region != "us-west-2" || s.GCEProjectID != DefaultGCEProjectID || len(s.TokenKey) != 32 || !set.Native() || strings.Join(set.Names(), ",") != "native,ec2" {
		t.Errorf("settings %+v, names %v", s, set.Names())
	}
	for _, bad := range []Settings{
		{AvailabilityZone: "a b"},
		{GCEProjectID: "p/q"},
		{Region: "<x>"},
		{EC2Tokens: 7},
	} {
		if _, err := New(nil, bad); err == nil {
			t.Errorf("New(%+v) succeeded", bad)
		}
	}
	if _, err := New([]string{"openstack"}, Settings{}); err == nil {
		t.Error("New(openstack) succeeded")
	}
}

// TestRoute checks which dialect owns which path, for every subset.
func TestRoute(t *testing.T) {
	all, _ := New([]string{NameNative, NameEC2, NameAzure, NameGCE}, Settings{})
	none, _ := New([]string{NameNative}, Settings{})
	gceOnly, _ := New([]string{NameGCE}, Settings{})
	for _, tc := range []struct {
		set  *Set
		path string
		want string // dialect name, "" for none
	}{
		{all, "/", NameEC2},
		{all, "/latest/meta-data/", NameEC2},
		{all, "/2021-03-23/meta-data/instance-id", NameEC2},
		{all, "/latest", NameEC2},
		{all, "/1999-01-01/meta-data/", ""},
		{all, "/computeMetadata/v1/instance/id", NameGCE},
		{all, "/computeMetadata", NameGCE},
		{all, "/computeMetadataX", ""},
		{all, "/metadata/instance", NameAzure},
		{all, "/metadata/versions", NameAzure},
		{all, "/metadata/v1/config", ""},
		{all, "/metadata/v1/status", ""},
		{all, "/healthz", ""},
		{none, "/", ""},
		{none, "/latest/meta-data/", ""},
		{none, "/metadata/instance", ""},
		{gceOnly, "/", NameGCE},
		{gceOnly, "/latest/meta-data/", ""},
	} {
		d := tc.set.Route(tc.path)
		got := ""
		if d != nil {
			got = d.Name()
		}
		if got != tc.want {
			t.Errorf("%v Route(%q) = %q, want %q", tc.set.Names(), tc.path, got, tc.want)
		}
	}
}

// TestAllDialectsTogether serves every dialect on one listener: the root
// is EC2's version list carrying GCE's header, and each dialect keeps its
// own rules.
func TestAllDialectsTogether(t *testing.T) {
	h := newHost(t, []string{NameNative, NameEC2, NameAzure, NameGCE}, Settings{})
	fleet(h)
	srv := h.start(t)
	a := clientFrom(t, addrA)
	code, hdr, body := do(t, a, "GET", srv.URL+"/", nil)
	if code != 200 || body != ec2RootListing || hdr.Get("Metadata-Flavor") != "Google" || hdr.Get("Server") != "EC2ws" {
		t.Errorf("root: %d %q %v", code, body, hdr)
	}
	if code, _, body := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", nil); code != 200 || body != "vm-a" {
		t.Errorf("EC2: %d %q", code, body)
	}
	if code, _, body := do(t, a, "GET", srv.URL+"/computeMetadata/v1/instance/name", map[string]string{"Metadata-Flavor": "Google"}); code != 200 || body != "vm-a" {
		t.Errorf("GCE: %d %q", code, body)
	}
	if code, _, body := do(t, a, "GET", srv.URL+"/metadata/instance/compute/name?api-version=2021-02-01&format=text", metadataTrue); code != 200 || body != "vm-a" {
		t.Errorf("Azure: %d %q", code, body)
	}
	// HEAD answers like GET without a body.
	if code, hdr, body := do(t, a, "HEAD", srv.URL+"/latest/meta-data/instance-id", nil); code != 200 || body != "" || hdr.Get("Content-Length") != "4" {
		t.Errorf("HEAD: %d %q %v", code, body, hdr)
	}
}

// FuzzDialects feeds arbitrary paths, queries and headers through every
// dialect and checks that each answers with a status of its rules and
// never panics.
func FuzzDialects(f *testing.F) {
	for _, s := range []string{
		"/latest/meta-data/public-keys/0/openssh-key", "/latest/api/token", "/2021-03-23/api/token/",
		"/computeMetadata/v1/instance/?recursive=true&alt=text", "/computeMetadata/v1/instance/name?wait_for_change=true&timeout_sec=1&last_etag=x",
		"/metadata/instance/network/interface/0/ipv4/ipAddress/0?api-version=2021-02-01&format=text", "/metadata/reprovisiondata?api-version=2019-06-01",
		"/latest/meta-data//placement///region", "/computeMetadata/v1/../v1/instance", "/metadata/instance/compute/publicKeys/9?api-version=2021-02-01",
	} {
		f.Add("GET", s, "Google", "true", "60", "")
		f.Add("PUT", s, "", "", "21600", "AQ==")
	}
	h := &host{shutdown: make(chan struct{})}
	set, err := New([]string{NameEC2, NameAzure, NameGCE}, Settings{})
	if err != nil {
		f.Fatal(err)
	}
	h.set = set
	h.byAddr = nil
	h.register("vm-a", "192.0.2.1", docA())
	close(h.shutdown) // long-polls answer at once
	ok := map[int]bool{200: true, 301: true, 400: true, 401: true, 403: true, 404: true, 405: true}
	f.Fuzz(func(t *testing.T, method, target, flavor, md, ttl, tok string) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.NewRequest(method, "http://169.254.169.254"+target, nil)
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.1:40000"
		req.Header.Set("Metadata-Flavor", flavor)
		req.Header.Set("Metadata", md)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", ttl)
		if tok != "" {
			req.Header.Set("X-aws-ec2-metadata-token", tok)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %s did not answer", method, target)
		}
		if rec.Code == 500 && strings.HasSuffix(strings.TrimSuffix(req.URL.Path, "/"), "api/token") {
			return // no connection to set the TTL on: refused, as it must be
		}
		if !ok[rec.Code] {
			t.Errorf("%s %s = %d", method, target, rec.Code)
		}
	})
}
