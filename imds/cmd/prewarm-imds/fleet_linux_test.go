package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// TestE2EFleetAndNotify runs the real binary as systemd would run it
// (Type=notify, $NOTIFY_SOCKET): READY=1 with a first STATUS= once it
// serves, a STATUS= that follows the fleet, STOPPING=1 at SIGTERM; the
// fleet page over the admin Unix socket and the token-guarded TCP
// listener, never on the guest listener; the info line of a report that
// changes an instance's state.
func TestE2EFleetAndNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	var seen []string
	until := func(pred func(string) bool, what string) string {
		t.Helper()
		b := make([]byte, 1024)
		for i := 0; i < 30; i++ {
			nc.SetReadDeadline(time.Now().Add(time.Minute)) // a bound, not a timing assertion
			n, err := nc.Read(b)
			if err != nil {
				t.Fatalf("waiting for %s after %q: %v", what, seen, err)
			}
			m := string(b[:n])
			seen = append(seen, m)
			if pred(m) {
				return m
			}
		}
		t.Fatalf("no %s in %q", what, seen)
		return ""
	}

	tok := filepath.Join(dir, "token")
	const secret = "fleet-page-token-of-at-least-32-bytes"
	if err := os.WriteFile(tok, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startIMDS(t, nil, "--rate", "0", "--admin-listen", tcp, "--admin-token-file", tok)
	if m := until(func(string) bool { return true }, "READY=1"); m != "READY=1\nSTATUS=0 instances, 0 parked polls" {
		t.Errorf("first notification %q", m)
	}

	p.mustCLI("", "register", "vm-f", "--address", "127.0.0.81")
	p.mustCLI(`{"partial":true,"hostname":"warm-f"}`, "publish", "vm-f", "-")
	if a := p.mustGuest("127.0.0.81", "POST", api.PathStatus,
		`{"seq":1,"time":"2026-12-03T10:00:00Z","generation":1,"state":"partial-ready","steps":[{"name":"hostname","ok":true,"ms":5}],"error":"","agentVersion":"t","event":""}`); a.code != 204 {
		t.Fatalf("report: %d %s", a.code, a.body)
	}
	until(func(m string) bool { return m == "STATUS=1 instance (1 partial-ready), 0 parked polls" }, "the partial-ready status")
	if !strings.Contains(p.out.String(), `msg="guest report" component=imds instance=vm-f generation=1 state=partial-ready seq=1 steps.hostname=5 ms=5`) {
		t.Errorf("no info line of the report:\n%s", p.out.String())
	}

	// The page over the Unix socket.
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.socket)
	}}, Timeout: 30 * time.Second}
	get := func(c *http.Client, url, token string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(uc, "http://imds/ui/", ""); code != 200 || !strings.Contains(body, `data-instance="vm-f" data-state="partial-ready"`) || !strings.Contains(body, `<td class="hostname">warm-f</td>`) {
		t.Errorf("fleet page on the socket: %d\n%s", code, body)
	}
	// Over TCP: the bearer token like every admin path.
	if code, _ := get(http.DefaultClient, "http://"+tcp+"/ui/", ""); code != 401 {
		t.Errorf("fleet page over TCP without the token: %d", code)
	}
	if code, body := get(http.DefaultClient, "http://"+tcp+"/ui/instances/vm-f", secret); code != 200 || !strings.Contains(body, `data-seq="1"`) {
		t.Errorf("instance page over TCP with the token: %d\n%s", code, body)
	}
	// Never on the guest listener, from the guest or anyone.
	for _, src := range []string{"127.0.0.81", "127.0.0.82"} {
		if a := p.mustGuest(src, "GET", "/ui/", ""); a.code == 200 || strings.Contains(a.body, "<html") {
			t.Errorf("guest listener from %s answers /ui/: %d %s", src, a.code, a.body)
		}
	}
	// The metrics.
	_, metrics := get(uc, "http://imds/metrics", "")
	for _, want := range []string{`prewarm_imds_instances_by_state{state="partial-ready"} 1`, `prewarm_imds_stale_instances 0`, `prewarm_imds_status_reports_total{state="partial-ready"} 1`, `prewarm_imds_publish_to_provisioned_seconds_count 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	p.stop(syscall.SIGTERM)
	until(func(m string) bool { return strings.HasPrefix(m, "STOPPING=1") }, "STOPPING=1")
}
