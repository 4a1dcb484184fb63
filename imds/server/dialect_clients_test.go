package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/metadata"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/shared/api"
)

func allDialects(t testing.TB, s dialect.Settings) *dialect.Set {
	t.Helper()
	names, err := dialect.ParseList(dialect.DefaultList)
	if err != nil {
		t.Fatal(err)
	}
	set, err := dialect.New(names, s)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestDialectRuleOrder checks the guest rules on the dialects' paths: the
// contract's order (405, the dialect's header rules, 403 forwarding, 404
// unknown instance, 429), each answered in the dialect's own format, and
// the native API's Metadata rule left to /metadata/ paths.
func TestDialectRuleOrder(t *testing.T) {
	s := newTestServer(t, Options{Rate: 0.001, Burst: 100, Dialects: allDialects(t, dialect.Settings{})})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	mustRegister(t, s, "vm-c", api.Registration{Addresses: []string{"10.0.0.3"}})
	mustPublish(t, s, "vm-a", `{"hostname":"web-a","userData":"#cloud-config\n"}`)
	h := s.GuestHandler()
	flavor := map[string]string{"Metadata-Flavor": "Google"}
	const unknown = "192.0.2.1"
	tests := []struct {
		name string
		r    req
		code int
		body string // substring of the body
	}{
		{"EC2 405 first", req{method: "POST", path: "/latest/meta-data/", from: unknown, hdr: map[string]string{"X-Forwarded-For": "x"}}, 405, "405 - Method Not Allowed"},
		{"EC2 versioned token path 403 before 404", req{method: "PUT", path: "/2021-03-23/api/token", from: unknown, hdr: map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}}, 403, "403 - Forbidden"},
		{"EC2 token TTL 400 before 403", req{method: "PUT", path: "/latest/api/token", from: unknown, hdr: map[string]string{"X-Forwarded-For": "x"}}, 400, "400 - Bad Request"},
		{"EC2 forwarded 403 before 404", req{path: "/latest/meta-data/instance-id", from: unknown, hdr: map[string]string{"X-Forwarded-For": "x"}}, 403, "403 - Forbidden"},
		{"EC2 Forwarded 403", req{path: "/latest/meta-data/instance-id", from: "10.0.0.1", hdr: map[string]string{"Forwarded": "for=1.2.3.4"}}, 403, "403 - Forbidden"},
		{"EC2 unknown instance", req{path: "/latest/meta-data/instance-id", from: unknown}, 404, "404 - Not Found"},
		{"EC2 without Metadata header", req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}, 200, "vm-a"},
		{"EC2 user-data", req{path: "/latest/user-data", from: "10.0.0.1"}, 200, "#cloud-config"},
		{"EC2 nothing published yet", req{path: "/latest/meta-data/instance-id", from: "10.0.0.3"}, 200, "vm-c"},
		{"EC2 no user-data yet", req{path: "/latest/user-data", from: "10.0.0.3"}, 404, "404 - Not Found"},
		{"GCE flavor 403 before 404", req{path: "/computeMetadata/v1/instance/name", from: unknown}, 403, "Missing Metadata-Flavor:Google header."},
		{"GCE unknown instance", req{path: "/computeMetadata/v1/instance/name", from: unknown, hdr: flavor}, 404, "Error 404"},
		{"GCE", req{path: "/computeMetadata/v1/instance/hostname", from: "10.0.0.1", hdr: flavor}, 200, "web-a.c.prewarm.internal"},
		{"Azure Metadata 400 before 403", req{path: "/metadata/instance?api-version=2021-02-01", from: unknown, hdr: map[string]string{"X-Forwarded-For": "x"}}, 400, `"Bad request. Required metadata header not specified"`},
		{"Azure api-version 400", req{path: "/metadata/instance", from: unknown, hdr: md}, 400, `"newest-versions"`},
		{"Azure forwarded 403", req{path: "/metadata/instance?api-version=2021-02-01", from: unknown, hdr: with(md, "X-Forwarded-For", "x")}, 403, `{"error":"forwarded requests are refused`},
		{"Azure unknown instance", req{path: "/metadata/instance?api-version=2021-02-01", from: unknown, hdr: md}, 404, `{"error":"unknown instance"}`},
		{"Azure", req{path: "/metadata/instance/compute/osProfile/computerName?api-version=2021-02-01&format=text", from: "10.0.0.1", hdr: md}, 200, "web-a"},
		{"Azure reprovisiondata before a publish", req{path: "/metadata/reprovisiondata?api-version=2019-06-01", from: "10.0.0.3", hdr: md}, 404, "Not found"},
		{"native keeps its Metadata rule", req{path: api.PathConfig, from: "10.0.0.1"}, 400, `Metadata: true`},
		{"native", req{path: api.PathConfig, from: "10.0.0.1", hdr: md}, 200, `"hostname":"web-a"`},
		{"native unknown path", req{path: "/metadata/v1/other", from: "10.0.0.1", hdr: md}, 404, "no such path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, tt.r)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Fatalf("%d %q, want %d containing %q", rec.Code, rec.Body.String(), tt.code, tt.body)
			}
		})
	}
	// The token bucket is shared by all dialects and the native API: with
	// a burst of 3, the fourth request is refused in the dialect's format.
	s = newTestServer(t, Options{Rate: 0.001, Burst: 3, Dialects: allDialects(t, dialect.Settings{})})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"10.0.0.2"}})
	h = s.GuestHandler()
	for i, p := range []string{"/latest/meta-data/instance-id", "/computeMetadata/v1/instance/name", "/metadata/instance?api-version=2021-02-01"} {
		hdr := map[string]string{"Metadata-Flavor": "Google", "Metadata": "true"}
		if rec := do(h, req{path: p, from: "10.0.0.2", hdr: hdr}); rec.Code != 200 {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body.String())
		}
	}
	rec := do(h, req{path: "/latest/meta-data/instance-id", from: "10.0.0.2"})
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "429 - Too Many Requests") {
		t.Fatalf("past the burst: %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
	rec = do(h, req{path: "/computeMetadata/v1/instance/name", from: "10.0.0.2", hdr: flavor})
	if rec.Code != 429 || rec.Header().Get("Metadata-Flavor") != "Google" {
		t.Fatalf("GCE past the burst: %d %v", rec.Code, rec.Header())
	}
}

// TestDialectSubsets checks --dialects: without a dialect its paths are
// the native API's (unknown paths), and without native the native paths
// are gone.
func TestDialectSubsets(t *testing.T) {
	onlyNative, _ := dialect.New([]string{dialect.NameNative}, dialect.Settings{})
	noNative, _ := dialect.New([]string{dialect.NameEC2}, dialect.Settings{})
	for _, tc := range []struct {
		name string
		set  *dialect.Set
		r    req
		code int
	}{
		{"nil set: EC2 path is native", nil, req{path: "/latest/meta-data/instance-id", from: "10.0.0.1", hdr: md}, 404},
		{"nil set: native", nil, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}, 200},
		{"native only: EC2 path needs Metadata", onlyNative, req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}, 400},
		{"native only: GCE path unknown", onlyNative, req{path: "/computeMetadata/v1/instance/name", from: "10.0.0.1", hdr: with(md, "Metadata-Flavor", "Google")}, 404},
		{"EC2 only: native gone", noNative, req{path: api.PathConfig, from: "10.0.0.1", hdr: md}, 404},
		{"EC2 only: EC2", noNative, req{path: "/latest/meta-data/instance-id", from: "10.0.0.1"}, 200},
		{"EC2 only: Azure path unknown", noNative, req{path: "/metadata/instance?api-version=2021-02-01", from: "10.0.0.1", hdr: md}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Options{Dialects: tc.set})
			mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
			mustPublish(t, s, "vm-a", `{"hostname":"web-a"}`)
			if rec := do(s.GuestHandler(), tc.r); rec.Code != tc.code {
				t.Fatalf("%d %q, want %d", rec.Code, rec.Body.String(), tc.code)
			}
		})
	}
}

// guestClient is an HTTP client whose connections come from src on
// loopback (Linux routes all of 127.0.0.0/8 to lo).
func guestClient(t *testing.T, src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestDialectsServed drives the served dialects over a real listener with
// each cloud's own client library: the AWS SDK's IMDSv2 flow (tokens
// required, so the token PUT's hop limit is set through ServeGuest's
// connection context) and Google's Subscribe, woken by a Publish.
func TestDialectsServed(t *testing.T) {
	if testing.Short() {
		t.Skip("listener test")
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs 127.0.0.0/8 on loopback (Linux)")
	}
	s := newTestServer(t, Options{Dialects: allDialects(t, dialect.Settings{EC2Tokens: dialect.TokensRequired, AvailabilityZone: "eu-west-1a", GCEProjectID: "pool"})})
	mustRegister(t, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustRegister(t, s, "vm-b", api.Registration{Addresses: []string{"127.0.0.2"}})
	mustPublish(t, s, "vm-a", `{"hostname":"web-a","userData":"#cloud-config\n","users":[{"name":"alice","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm alice@laptop"]}]}`)
	mustPublish(t, s, "vm-b", `{"hostname":"web-b","partial":true}`)
	ln := serveGuestLocal(t, s)
	url := "http://" + ln.Addr().String()
	ctx := context.Background()

	for _, tc := range []struct{ src, id, host string }{{"127.0.0.1", "vm-a", "web-a"}, {"127.0.0.2", "vm-b", "web-b"}} {
		c := imds.New(imds.Options{Endpoint: url, HTTPClient: guestClient(t, tc.src), EnableFallback: aws.FalseTernary})
		for path, want := range map[string]string{"instance-id": tc.id, "local-hostname": tc.host, "placement/availability-zone": "eu-west-1a"} {
			out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
			if err != nil {
				t.Fatalf("%s GetMetadata(%s): %v", tc.id, path, err)
			}
			b, _ := io.ReadAll(out.Content)
			out.Content.Close()
			if string(b) != want {
				t.Errorf("%s %s = %q, want %q", tc.id, path, b, want)
			}
		}
		doc, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil || doc.InstanceID != tc.id || doc.Region != "eu-west-1" {
			t.Errorf("%s identity document %+v, %v", tc.id, doc, err)
		}
	}

	t.Setenv("GCE_METADATA_HOST", ln.Addr().String())
	gb := metadata.NewWithOptions(&metadata.Options{Client: guestClient(t, "127.0.0.2")})
	if name, err := gb.InstanceNameWithContext(ctx); err != nil || name != "vm-b" {
		t.Fatalf("vm-b InstanceName = %q, %v", name, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	seen := make(chan string, 4)
	go gb.SubscribeWithContext(sctx, "instance/hostname", func(_ context.Context, v string, ok bool) error {
		seen <- v
		if strings.HasPrefix(v, "web-b2") {
			return errors.New("done")
		}
		return nil
	})
	if v := <-seen; v != "web-b.c.pool.internal" {
		t.Fatalf("first hostname %q", v)
	}
	time.Sleep(200 * time.Millisecond)                 // let it park
	mustPublish(t, s, "vm-a", `{"hostname":"web-a2"}`) // another instance: no wake-up
	mustPublish(t, s, "vm-b", `{"hostname":"web-b2"}`)
	select {
	case v := <-seen:
		if v != "web-b2.c.pool.internal" {
			t.Fatalf("after publish %q", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe not woken by the publish")
	}
}
