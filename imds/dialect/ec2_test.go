package dialect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// sdkClient is the AWS SDK's IMDS client for the instance at src.
func sdkClient(t *testing.T, url, src string, fallback aws.Ternary) *imds.Client {
	return imds.New(imds.Options{
		Endpoint:       url,
		HTTPClient:     clientFrom(t, src),
		EnableFallback: fallback,
	})
}

func getMD(t *testing.T, c *imds.Client, path string) string {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		t.Fatalf("GetMetadata(%q): %v", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestEC2SDK drives the EC2 dialect with the AWS SDK's own IMDS client
// (IMDSv2 only, no fallback, tokens required) from three instances, each
// of which must see its own data and only its own.
func TestEC2SDK(t *testing.T) {
	h := newHost(t, []string{NameEC2}, Settings{AvailabilityZone: "eu-west-1b", EC2Tokens: TokensRequired})
	fleet(h)
	srv := h.start(t)
	ctx := context.Background()
	a := sdkClient(t, srv.URL, addrA, aws.FalseTernary)
	b := sdkClient(t, srv.URL, addrB, aws.FalseTernary)
	c := sdkClient(t, srv.URL, addrC, aws.FalseTernary)

	for _, tc := range []struct {
		client *imds.Client
		path   string
		want   string
	}{
		{a, "instance-id", "vm-a"},
		{b, "instance-id", "vm-b"},
		{c, "instance-id", "vm-c"},
		{a, "hostname", "web-a"},
		{a, "local-hostname", "web-a"},
		{b, "local-hostname", "web-b"},
		{c, "local-hostname", "ip-127-0-0-3.eu-west-1.compute.internal"},
		{a, "local-ipv4", "10.1.0.5"},
		{b, "local-ipv4", addrB},
		{a, "mac", macA},
		{a, "placement/availability-zone", "eu-west-1b"},
		{a, "placement/region", "eu-west-1"},
		{a, "", "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\nmac\nnetwork/\nplacement/\npublic-keys/"},
		{b, "", "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-keys/"},
		{c, "/", "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\nplacement/"},
		{a, "public-keys/", "0=alice\n1=alice-2\n2=bob"},
		{a, "public-keys/0", "openssh-key"},
		{a, "public-keys/0/openssh-key", keyAlice1},
		{a, "public-keys/1/openssh-key", keyAlice2},
		{a, "public-keys/2/openssh-key", keyBob},
		{b, "public-keys", "0=carol"},
		{b, "public-keys/0/openssh-key", keyCarol},
		{a, "network/interfaces/macs/", macA + "/"},
		{a, "network/interfaces/macs/" + macA + "/", "device-number\nipv6s\nlocal-hostname\nlocal-ipv4s\nmac\nsubnet-ipv4-cidr-block\nsubnet-ipv6-cidr-blocks"},
		{a, "network/interfaces/macs/" + macA + "/local-ipv4s", "10.1.0.5\n10.1.0.6"},
		{a, "network/interfaces/macs/" + macA + "/subnet-ipv4-cidr-block", "10.1.0.0/24"},
		{a, "network/interfaces/macs/" + macA + "/ipv6s", "2001:db8:1::5"},
		{a, "network/interfaces/macs/" + macA + "/device-number", "0"},
	} {
		if got := getMD(t, tc.client, tc.path); got != tc.want {
			t.Errorf("GetMetadata(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}

	// Each instance's keys and interfaces are its own.
	for _, p := range []string{"public-keys/1/openssh-key", "network/interfaces/macs/" + macA + "/mac", "mac"} {
		if _, err := b.GetMetadata(ctx, &imds.GetMetadataInput{Path: p}); httpStatus(err) != http.StatusNotFound {
			t.Errorf("vm-b GetMetadata(%q): err %v, want a 404", p, err)
		}
	}

	ud, err := a.GetUserData(ctx, &imds.GetUserDataInput{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(ud.Content)
	ud.Content.Close()
	if string(got) != userDataA {
		t.Errorf("vm-a user-data = %q, want %q", got, userDataA)
	}
	for _, cl := range []*imds.Client{b, c} {
		if _, err := cl.GetUserData(ctx, &imds.GetUserDataInput{}); httpStatus(err) != http.StatusNotFound {
			t.Errorf("user-data without userData: err %v, want a 404 (as EC2)", err)
		}
	}

	for _, tc := range []struct {
		client   *imds.Client
		id, ip   string
		hostname string
	}{{a, "vm-a", "10.1.0.5", "web-a"}, {b, "vm-b", addrB, "web-b"}} {
		doc, err := tc.client.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
		if err != nil {
			t.Fatal(err)
		}
		if doc.InstanceID != tc.id || doc.PrivateIP != tc.ip || doc.Region != "eu-west-1" || doc.AvailabilityZone != "eu-west-1b" {
			t.Errorf("identity document = %+v, want instance %s, ip %s, eu-west-1b", doc.InstanceIdentityDocument, tc.id, tc.ip)
		}
	}
	reg, err := a.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil || reg.Region != "eu-west-1" {
		t.Errorf("GetRegion = %v, %v; want eu-west-1", reg, err)
	}

	// The SDK took the IMDSv2 path: a token PUT, then every read with it.
	var puts, reads int
	for _, r := range h.requests() {
		switch {
		case strings.HasPrefix(r, "PUT /latest/api/token"):
			puts++
		case strings.HasSuffix(r, "token=no"):
			t.Errorf("request without a token: %s", r)
		default:
			reads++
		}
	}
	if puts < 3 || reads < 30 {
		t.Errorf("%d token PUTs and %d reads; want a token per client and every read with it", puts, reads)
	}
}

// TestEC2Unknown checks that a caller no instance owns gets EC2's 404,
// token or not.
func TestEC2Unknown(t *testing.T) {
	h := newHost(t, []string{NameEC2}, Settings{})
	fleet(h)
	srv := h.start(t)
	cl := clientFrom(t, addrUnknown)
	code, hdr, body := do(t, cl, http.MethodPut, srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if code != http.StatusNotFound || !strings.Contains(body, "<h1>404 - Not Found</h1>") || hdr.Get("Content-Type") != "text/html" {
		t.Errorf("token PUT from an unknown address: %d %q %q", code, hdr.Get("Content-Type"), body)
	}
	if _, err := sdkClient(t, srv.URL, addrUnknown, aws.TrueTernary).GetMetadata(context.Background(), &imds.GetMetadataInput{Path: "instance-id"}); httpStatus(err) != http.StatusNotFound {
		t.Errorf("SDK from an unknown address: %v, want 404", err)
	}
}

// TestEC2TokenRules checks IMDSv2's token rules as EC2 documents them, in
// both modes, with raw requests.
func TestEC2TokenRules(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	for _, mode := range []TokenMode{TokensOptional, TokensRequired} {
		t.Run(mode.String(), func(t *testing.T) {
			h := newHost(t, []string{NameEC2}, Settings{EC2Tokens: mode, Now: clock})
			fleet(h)
			srv := h.start(t)
			a, b := clientFrom(t, addrA), clientFrom(t, addrB)
			ttl := func(v string) map[string]string { return map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": v} }

			for _, tc := range []struct {
				name   string
				method string
				path   string
				hdr    map[string]string
				want   int
			}{
				{"ttl 0", "PUT", "/latest/api/token", ttl("0"), 400},
				{"ttl 21601", "PUT", "/latest/api/token", ttl("21601"), 400},
				{"ttl not a number", "PUT", "/latest/api/token", ttl("ten"), 400},
				{"no ttl", "PUT", "/latest/api/token", nil, 400},
				{"versioned token path", "PUT", "/2021-03-23/api/token", ttl("60"), 403},
				{"versioned token path, no ttl", "PUT", "/2021-03-23/api/token", nil, 403},
				{"forwarded token PUT", "PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.9.9.9"}, 403},
				{"GET on the token path", "GET", "/latest/api/token", nil, 405},
				{"PUT elsewhere", "PUT", "/latest/meta-data/", ttl("60"), 405},
				{"POST", "POST", "/latest/meta-data/instance-id", nil, 405},
				{"forwarded read", "GET", "/latest/meta-data/instance-id", map[string]string{"X-Forwarded-For": "10.9.9.9"}, 403},
				{"bad token", "GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": "AQAEAKV-not-a-token=="}, 401},
			} {
				code, hdr, body := do(t, a, tc.method, srv.URL+tc.path, tc.hdr)
				if code != tc.want {
					t.Errorf("%s: %s %s = %d %q, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
				}
				if want := fmt.Sprintf("<h1>%d - %s</h1>", tc.want, http.StatusText(tc.want)); code == tc.want && !strings.Contains(body, want) {
					t.Errorf("%s: body %q lacks EC2's error page", tc.name, body)
				}
				if hdr.Get("Server") != "EC2ws" {
					t.Errorf("%s: Server %q, want EC2ws", tc.name, hdr.Get("Server"))
				}
			}

			// IMDSv1: served only when tokens are optional.
			code, _, body := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", nil)
			if mode == TokensOptional && (code != 200 || body != "vm-a") {
				t.Errorf("IMDSv1 with optional tokens: %d %q", code, body)
			}
			if mode == TokensRequired && code != 401 {
				t.Errorf("IMDSv1 with required tokens: %d, want 401", code)
			}

			// A token works for the instance it was issued to, only.
			code, hdr, tok := do(t, a, "PUT", srv.URL+"/latest/api/token", ttl("60"))
			if code != 200 || hdr.Get("X-aws-ec2-metadata-token-ttl-seconds") != "60" || tok == "" {
				t.Fatalf("token PUT: %d ttl %q token %q", code, hdr.Get("X-aws-ec2-metadata-token-ttl-seconds"), tok)
			}
			withTok := map[string]string{"X-aws-ec2-metadata-token": tok}
			if code, _, body := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", withTok); code != 200 || body != "vm-a" {
				t.Errorf("read with vm-a's token: %d %q", code, body)
			}
			if code, _, body := do(t, b, "GET", srv.URL+"/latest/meta-data/instance-id", withTok); code != 401 {
				t.Errorf("vm-b with vm-a's token: %d %q, want 401", code, body)
			}
			// Tampering with the token breaks it.
			bad := []byte(tok)
			bad[5] ^= 1
			if bad[5] == '+' || bad[5] == '/' || bad[5] == '=' {
				bad[5] = 'A'
			}
			if code, _, _ := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": string(bad)}); code != 401 {
				t.Errorf("tampered token: %d, want 401", code)
			}
			// It expires after its TTL.
			now.Add(59)
			if code, _, _ := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", withTok); code != 200 {
				t.Errorf("token at 59 s of 60: %d, want 200", code)
			}
			now.Add(1)
			if code, _, _ := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", withTok); code != 401 {
				t.Errorf("expired token: %d, want 401", code)
			}
			// The maximum TTL is accepted.
			if code, _, _ := do(t, a, "PUT", srv.URL+"/latest/api/token", ttl("21600")); code != 200 {
				t.Errorf("ttl 21600: %d, want 200", code)
			}
		})
	}
}

// TestEC2MalformedTokens sends tokens of every malformed shape (issue 13
// item 10: 40 unpadded base64 characters decode to 30 bytes and used to
// overrun the 29-byte buffer) through a real server: each is a 401 with
// EC2's error page, and none logs anything at Info or above.
func TestEC2MalformedTokens(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := newHost(t, []string{NameEC2}, Settings{Logger: logger})
	fleet(h)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = ConnContext
	srv.Config.ErrorLog = log.New(&logs, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	a := clientFrom(t, addrA)
	_, _, good := do(t, a, "PUT", srv.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if len(good) != 40 {
		t.Fatalf("token %q: want 40 characters", good)
	}
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for _, tc := range []struct{ name, tok string }{
		{"40 unpadded characters", strings.Repeat("A", 40)},
		{"the real token unpadded and one longer", strings.TrimSuffix(good, "=") + "AA"},
		{"40 characters, padding in the middle", strings.Repeat("A", 20) + "==" + strings.Repeat("A", 18)},
		{"40 characters, two pads", good[:38] + "=="},
		{"URL alphabet", strings.Repeat("-_", 19) + "A="},
		{"not base64", strings.Repeat("!", 40)},
		{"non-ASCII", strings.Repeat("é", 20)},
		{"one short", good[:39]},
		{"one long", good + "A"},
		// The same 29 bytes with a stray bit in the padding bits of the
		// last character: one token, one spelling.
		{"non-canonical trailing bits", good[:38] + string(b64[strings.IndexByte(b64, good[38])|1]) + "="},
		{"version 0", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"huge", strings.Repeat("A", 8000)},
	} {
		code, hdr, body := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": tc.tok})
		if code != 401 || !strings.Contains(body, "<h1>401 - Unauthorized</h1>") || hdr.Get("Server") != "EC2ws" {
			t.Errorf("%s (%q): %d %q, want 401 with EC2's error page", tc.name, tc.tok, code, body)
		}
	}
	if code, _, body := do(t, a, "GET", srv.URL+"/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": good}); code != 200 || body != "vm-a" {
		t.Errorf("the good token after the bad ones: %d %q", code, body)
	}
	if logs.Len() != 0 {
		t.Errorf("malformed tokens logged:\n%s", logs.String())
	}
}

// TestEC2Listings checks the root and version listings, versioned
// prefixes, the dynamic tree and content types.
func TestEC2Listings(t *testing.T) {
	h := newHost(t, []string{NameEC2}, Settings{AvailabilityZone: "us-east-1a"})
	fleet(h)
	srv := h.start(t)
	a, b := clientFrom(t, addrA), clientFrom(t, addrB)
	for _, tc := range []struct {
		cl         *http.Client
		path, want string
		ctype      string
	}{
		{a, "/", ec2RootListing, "text/plain"},
		{a, "/latest", "dynamic\nmeta-data\nuser-data", "text/plain"},
		{a, "/latest/", "dynamic\nmeta-data\nuser-data", "text/plain"},
		{b, "/latest/", "dynamic\nmeta-data", "text/plain"},
		{a, "/2021-03-23/meta-data/instance-id", "vm-a", "text/plain"},
		{a, "/2009-04-04/meta-data/instance-id", "vm-a", "text/plain"},
		{a, "/2016-09-02/meta-data/placement/availability-zone", "us-east-1a", "text/plain"},
		{a, "/latest/meta-data/placement", "availability-zone\nregion", "text/plain"},
		{a, "/latest/user-data", userDataA, "application/octet-stream"},
		{a, "/2021-03-23/user-data", userDataA, "application/octet-stream"},
		{a, "/latest/dynamic/", "instance-identity/", "text/plain"},
		{a, "/latest/dynamic/instance-identity/", "document", "text/plain"},
	} {
		code, hdr, body := do(t, tc.cl, "GET", srv.URL+tc.path, nil)
		if code != 200 || body != tc.want || hdr.Get("Content-Type") != tc.ctype {
			t.Errorf("GET %s = %d %q %q, want 200 %q %q", tc.path, code, hdr.Get("Content-Type"), body, tc.ctype, tc.want)
		}
	}
	if !strings.HasPrefix(ec2RootListing, "1.0\n2007-01-19\n") || !strings.HasSuffix(ec2RootListing, "\n2021-03-23\n2021-07-15\n2022-09-24\n2024-04-11\nlatest") {
		t.Errorf("root listing %q", ec2RootListing)
	}
	for _, p := range []string{"/latest/meta-data/nope", "/latest/nope", "/1999-01-01/meta-data/", "/latest/user-data/x"} {
		code, _, _ := do(t, a, "GET", srv.URL+p, nil)
		if code != 404 {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	_, _, doc := do(t, a, "GET", srv.URL+"/latest/dynamic/instance-identity/document", nil)
	if !strings.Contains(doc, `"instanceId" : "vm-a",`) || !strings.Contains(doc, `"region" : "us-east-1",`) {
		t.Errorf("identity document %s", doc)
	}
}
