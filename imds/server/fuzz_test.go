package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/shared/api"
)

// FuzzGuestHandler sends arbitrary methods, targets, headers and bodies from
// one instance's address. Nothing may panic, every error is an error
// object, and the other instance's document and status stay untouched.
func FuzzGuestHandler(f *testing.F) {
	seeds := []struct{ method, target, hdr, body string }{
		{"GET", "/metadata/v1/config", "Metadata: true", ""},
		{"GET", "/metadata/v1/config?wait=true&timeout=0", "Metadata: true\nIf-None-Match: \"1\"", ""},
		{"GET", "/metadata/v1/config?wait=1&timeout=0.001", "Metadata: true\nIf-None-Match: W/\"7\"", ""},
		{"POST", "/metadata/v1/status", "Metadata: true", report},
		{"POST", "/metadata/v1/status", "Metadata: true", `{"seq":1,"time":"x"}`},
		{"GET", "/metadata/v1/instance", "Metadata: true\nX-Forwarded-For: 10.0.0.2", ""},
		{"DELETE", "/metadata/v1/config", "", ""},
		{"GET", "/metadata/v1/config?timeout=1e999&wait=true", "Metadata: TRUE\nIf-None-Match: *", ""},
		{"GET", "/%2e%2e/metadata/v1/config", "Metadata: true", ""},
		{"GET", "/latest/meta-data/instance-id", "", ""},
		{"PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 21600", ""},
		{"GET", "/computeMetadata/v1/instance/?recursive=true&wait_for_change=true&timeout_sec=1", "Metadata-Flavor: Google", ""},
		{"GET", "/metadata/instance?api-version=2021-02-01", "Metadata: true", ""},
		{"GET", "/metadata/v1/config?wait=true&timeout=0", "Metadata: true\nIf-None-Match: \"1.0123456789abcdef\"", ""},
		{"GET", "/metadata/v1/config", "Metadata: true\nIf-None-Match: \"1.\"", ""},
		{"GET", "/metadata/v1/config", "Metadata: true\nIf-None-Match: W/\"1.0123456789ABCDEF\"", ""},
		{"GET", "/metadata/v1/config", "Metadata: true\nIf-None-Match: \"1.0123456789abcdef.0123456789abcdef\"", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.hdr, s.body)
	}
	set, err := dialect.New([]string{"native", "ec2", "azure", "gce"}, dialect.Settings{})
	if err != nil {
		f.Fatal(err)
	}
	// The server's logs go nowhere: a fuzz target may not log through f,
	// and an input may well make the server warn (a guest ahead of the
	// store).
	s := newTestServer(f, Options{Rate: 1000, Burst: 1000, Dialects: set, Logger: slog.New(slog.DiscardHandler)})
	mustRegister(f, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(f, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	mustPublish(f, s, "vm-a", `{"hostname":"a"}`)
	mustPublish(f, s, "vm-b", `{"hostname":"b"}`)
	// Tags of this store's epoch: current, ahead (a restored backup) and
	// past the bound of a guest's claim.
	for _, g := range []string{"1", "9", "4503599627370497", "9223372036854775807"} {
		f.Add("GET", "/metadata/v1/config?wait=true&timeout=0", "Metadata: true\nIf-None-Match: \""+g+"."+s.st.Epoch()+"\"", "")
	}
	before := string(s.get("vm-b").cur.Load().doc)
	h := s.GuestHandler()
	f.Fuzz(func(t *testing.T, method, target, hdr, body string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		r, err := http.NewRequest(method, "http://169.254.169.254"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		r.RemoteAddr = "10.0.0.1:5555"
		for _, line := range strings.Split(hdr, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && k != "" {
				r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		// Long-polls are bounded by the handler's own timeout at most; keep
		// each input short.
		ctx, cancel := context.WithTimeout(context.Background(), 50e6)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r.WithContext(ctx))
		if rec.Code >= 400 && set.Route(r.URL.Path) == nil {
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d with a body that is not an error object: %q", rec.Code, rec.Body.String())
			}
		}
		if rec.Code == 200 && bytes.Contains(rec.Body.Bytes(), []byte(`"hostname":"b"`)) {
			t.Fatal("vm-a read vm-b's document")
		}
		if got := string(s.get("vm-b").cur.Load().doc); got != before {
			t.Fatal("vm-b's document changed")
		}
		if in, _ := s.Instance("vm-b"); in.LastStatus != nil {
			t.Fatal("vm-b got a status report")
		}
	})
}

// FuzzPublishChange feeds arbitrary decoded publish files (the parsing
// side is imds/publishdir's FuzzPublishFile) to the server's validation:
// no panic, every rejection is an error object with a 4xx status, and an
// accepted document stamps.
func FuzzPublishChange(f *testing.F) {
	f.Add(`{"addresses":["10.0.0.1"],"config":{"hostname":"a"}}`)
	f.Add(`{"hostInterface":"vnet0","labels":{"a":"b"},"config":null}`)
	f.Add(`{"addresses":["224.0.0.1"],"hostInterface":"a/b"}`)
	f.Add(`{"config":{"users":[{"name":"root","password":"x","passwordHash":"$6$x$y"}]}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var pf api.PublishFile
		if json.Unmarshal([]byte(body), &pf) != nil {
			return
		}
		c, e := publishChange(pf)
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Body.Error == "" {
				t.Fatalf("bad rejection %+v", e)
			}
			return
		}
		if c.Publish != nil {
			if _, err := c.Publish("vm", 1); err != nil {
				t.Fatalf("stamping an accepted document: %v", err)
			}
		}
	})
}
