package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// TestIsolation: a second guest cannot read the first guest's config by
// any header, a spoofed source address or a path trick, and the admin
// socket cannot be reached from a guest.
func TestIsolation(t *testing.T) {
	l := NewLab(t, 2)
	g1, g2 := l.Guests[0], l.Guests[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l.StartIMDS()
	// vm-1 is known by its interface and by its pool address, so a
	// spoofed source address has something to match.
	if _, err := l.Admin.Register(ctx, g1.ID, api.Registration{HostInterface: g1.HostIf, Addresses: []string{g1.Addr1.String()}}); err != nil {
		t.Fatal(err)
	}
	g2.Register(ctx)
	secret := fmt.Sprintf("vm-1-secret-%d", time.Now().UnixNano())
	l.Publish(ctx, g1.ID, Doc{"hostname": "tenant-one", "userData": secret, "users": []Doc{{"name": "alice", "password": TestPassword}}})
	l.Publish(ctx, g2.ID, Doc{"hostname": "tenant-two", "userData": "vm-2-data"})
	for _, g := range l.Guests {
		if err := g.StartDHCP(ctx); err != nil {
			t.Fatal(err)
		}
		ensureIdentity(t, l, g)
	}
	imds := "http://" + IMDSAddr
	md := map[string]string{"Metadata": "true"}

	// Positive control: vm-1 reads its own config.
	if r := guestHTTP(t, g1, HTTPReq{URL: imds + "/metadata/v1/config", Headers: md}); r.Code != 200 || !strings.Contains(r.Body, secret) {
		t.Fatalf("vm-1 cannot read its own config: %d %s %s", r.Code, r.Body, r.Err)
	}

	type probe struct {
		name string
		req  HTTPReq
		code int // expected status; 0: anything but vm-1's data
	}
	with := func(kv ...string) map[string]string {
		h := map[string]string{"Metadata": "true"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	cfg := imds + "/metadata/v1/config"
	raw := func(line string, extra ...string) HTTPReq {
		hdr := "Host: " + IMDSAddr + "\r\nMetadata: true\r\nConnection: close\r\n"
		for _, e := range extra {
			hdr += e + "\r\n"
		}
		return HTTPReq{URL: imds, Raw: line + "\r\n" + hdr + "\r\n"}
	}
	probes := []probe{
		{"own config", HTTPReq{URL: cfg, Headers: md}, 200},
		{"X-Forwarded-For vm-1", HTTPReq{URL: cfg, Headers: with("X-Forwarded-For", g1.Addr1.String())}, 403},
		{"Forwarded for=vm-1", HTTPReq{URL: cfg, Headers: with("Forwarded", "for="+g1.Addr1.String())}, 403},
		{"X-Real-IP vm-1", HTTPReq{URL: cfg, Headers: with("X-Real-IP", g1.Addr1.String())}, 0},
		{"X-Client-IP vm-1", HTTPReq{URL: cfg, Headers: with("X-Client-IP", g1.Addr1.String())}, 0},
		{"True-Client-IP vm-1", HTTPReq{URL: cfg, Headers: with("True-Client-IP", g1.Addr1.String())}, 0},
		{"X-Instance-Id vm-1", HTTPReq{URL: cfg, Headers: with("X-Instance-Id", g1.ID, "Instance-Id", g1.ID)}, 0},
		{"Host header of the admin API", HTTPReq{URL: cfg, Headers: with("Host", "imds-admin")}, 0},
		{"X-Original-URL", HTTPReq{URL: cfg, Headers: with("X-Original-URL", "/v1/instances/vm-1/config", "X-Rewrite-URL", "/v1/instances/vm-1/config")}, 0},
		{"Authorization bearer", HTTPReq{URL: imds + "/v1/instances/vm-1/config", Headers: with("Authorization", "Bearer x")}, 0},
		{"admin path", HTTPReq{URL: imds + "/v1/instances/vm-1/config", Headers: md}, 0},
		{"admin list", HTTPReq{URL: imds + "/v1/instances", Headers: md}, 0},
		{"admin status", HTTPReq{URL: imds + "/v1/instances/vm-1/status", Headers: md}, 0},
		{"query instance", HTTPReq{URL: cfg + "?instance=vm-1&id=vm-1&instanceId=vm-1", Headers: md}, 0},
		{"dot-dot raw", raw("GET /metadata/v1/config/../../../v1/instances/vm-1/config HTTP/1.1"), 0},
		{"encoded dot-dot raw", raw("GET /metadata/v1/%2e%2e/%2e%2e/v1/instances/vm-1/config HTTP/1.1"), 0},
		{"encoded slash raw", raw("GET /metadata%2fv1%2fconfig%2f..%2f..%2fv1%2finstances%2fvm-1%2fconfig HTTP/1.1"), 0},
		{"double slash raw", raw("GET //metadata/v1/config HTTP/1.1"), 0},
		{"absolute-form raw", raw("GET http://imds-admin/v1/instances/vm-1/config HTTP/1.1"), 0},
		{"semicolon raw", raw("GET /metadata/v1/config;vm-1 HTTP/1.1"), 0},
		{"instance path raw", raw("GET /metadata/v1/instances/vm-1/config HTTP/1.1"), 0},
		{"HTTP/1.0 no Host raw", HTTPReq{URL: imds, Raw: "GET /metadata/v1/config HTTP/1.0\r\nMetadata: true\r\n\r\n"}, 0},
		{"EC2 user-data", HTTPReq{URL: imds + "/latest/user-data"}, 0},
		{"EC2 user-data with token", HTTPReq{URL: imds + "/latest/user-data", Headers: map[string]string{"X-aws-ec2-metadata-token": "forged"}}, 0},
		{"GCE user-data", HTTPReq{URL: imds + "/computeMetadata/v1/instance/attributes/user-data", Headers: map[string]string{"Metadata-Flavor": "Google"}}, 0},
		{"GCE recursive", HTTPReq{URL: imds + "/computeMetadata/v1/?recursive=true", Headers: map[string]string{"Metadata-Flavor": "Google"}}, 0},
		{"Azure userData", HTTPReq{URL: imds + "/metadata/instance/compute/userData?api-version=2021-01-01&format=text", Headers: md}, 0},
		{"Azure instance", HTTPReq{URL: imds + "/metadata/instance?api-version=2021-02-01", Headers: md}, 0},
		{"status POST as vm-1", HTTPReq{Method: "POST", URL: imds + "/metadata/v1/status", Headers: with("Content-Type", "application/json", "X-Forwarded-For", g1.Addr1.String()),
			Body: `{"seq":1,"state":"provisioned","generation":1}`}, 403},
	}
	check := func(name string, r HTTPReq, resp HTTPResp, code int) {
		t.Helper()
		if strings.Contains(resp.Body, secret) || strings.Contains(resp.Body, "tenant-one") || strings.Contains(resp.Body, TestPassword) {
			t.Errorf("%s: vm-2 read vm-1's data: %d %s", name, resp.Code, resp.Body)
		}
		if code != 0 && resp.Code != code {
			t.Errorf("%s: status %d (%s %s), want %d", name, resp.Code, strings.TrimSpace(resp.Body), resp.Err, code)
		}
		t.Logf("%-32s → %d %.80s%s", name, resp.Code, strings.TrimSpace(resp.Body), resp.Err)
	}
	for _, p := range probes {
		check(p.name, p.req, guestHTTP(t, g2, p.req), p.code)
	}

	// Spoofed source addresses: vm-1's pool address, its gateway, the
	// IMDS's own address; the packets still arrive on vh2.
	for _, src := range []string{g1.Addr1.String(), g1.GW1.String(), IMDSAddr} {
		g2.MustExec("ip", "addr", "add", src+"/32", "dev", "eth0")
		for _, path := range []string{"/metadata/v1/config", "/metadata/v1/instance"} {
			req := HTTPReq{URL: imds + path, Headers: md, Src: src}
			resp := guestHTTP(t, g2, req)
			check("source "+src+" "+path, req, resp, 0)
			if resp.Code == 200 && strings.Contains(resp.Body, `"`+g1.ID+`"`) {
				t.Errorf("source %s: identified as %s", src, g1.ID)
			}
		}
		g2.MustExec("ip", "addr", "del", src+"/32", "dev", "eth0")
	}

	// The admin socket: its directory is not even visible in a guest.
	if r := guestHTTP(t, g2, HTTPReq{URL: "http://imds-admin/v1/instances", Unix: l.AdminSock}); r.Err == "" {
		t.Errorf("the admin socket answered a guest: %d %s", r.Code, r.Body)
	} else {
		t.Logf("admin socket from the guest: %s", r.Err)
	}
	for _, addr := range []string{g2.GW1.String() + ":80", IMDSAddr + ":8080", IMDSAddr + ":8081", IMDSAddr + ":443"} {
		r := guestHTTP(t, g2, HTTPReq{URL: "http://" + addr + "/v1/instances"})
		if r.Err == "" && (r.Code == 200 || strings.Contains(r.Body, g1.ID)) {
			t.Errorf("%s answered the admin API to a guest: %d %s", addr, r.Code, r.Body)
		}
	}
	// And vm-1 still reads its own config, untouched.
	if r := guestHTTP(t, g1, HTTPReq{URL: cfg, Headers: md}); r.Code != 200 || !strings.Contains(r.Body, secret) {
		t.Errorf("vm-1 after the probes: %d %s %s", r.Code, r.Body, r.Err)
	}
}
