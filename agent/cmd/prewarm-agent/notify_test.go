package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

func TestStatusText(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	for _, c := range []struct {
		r    status.Report
		want string
	}{
		{status.Report{State: status.StateStarting}, "starting"},
		{status.Report{State: status.StateStarting, Generation: 4}, "starting (generation 4 applied before)"},
		{status.Report{State: status.StateWaiting}, "waiting for a config from the IMDS"},
		{status.Report{State: status.StateApplying, Generation: 2}, "applying generation 2"},
		{status.Report{State: status.StatePartialReady, Generation: 1}, "waiting for final config (partial, generation 1)"},
		{status.Report{State: status.StateProvisioned, Generation: 3}, "provisioned generation 3"},
		{status.Report{State: status.StateProvisioned, Generation: 3, Event: status.EventDHCPRenewed}, "provisioned generation 3"},
		{status.Report{State: status.StateProvisioned, Generation: 3, RebootRequired: true}, "provisioned generation 3 (a reboot completes it)"},
		{status.Report{State: status.StateFailed, Generation: 5, Error: "users: useradd alice:\n  exit 9"}, "failed generation 5: users: useradd alice: exit 9"},
		{status.Report{State: status.StateFailed, Generation: 5}, "failed generation 5"},
		{status.Report{State: status.StateFailed, Generation: 5, Error: long}, "failed generation 5: " + strings.Repeat("é", 100) + "…"},
	} {
		if got := statusText(c.r); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.r, got, c.want)
		}
	}
}

// The service program tells systemd what it waits for: READY=1 with the
// first report, then a STATUS= line after each report, through a partial
// config and a final one from a real in-process IMDS.
func TestProgramStatusLines(t *testing.T) {
	srv, err := server.New(server.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ctx := context.Background()
	if _, _, err := srv.Register(ctx, "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.GuestHandler())
	t.Cleanup(hs.Close)

	d := t.TempDir()
	sock := filepath.Join(d, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram: %v", err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	// next returns the next STATUS= text, skipping other lines; the
	// deadline is a bound, not a timing assertion.
	var seen []string
	until := func(want string) {
		t.Helper()
		b := make([]byte, 512)
		for i := 0; i < 20; i++ {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			n, err := c.Read(b)
			if err != nil {
				t.Fatalf("waiting for %q after %q: %v", want, seen, err)
			}
			msg := string(b[:n])
			seen = append(seen, msg)
			if strings.HasSuffix(msg, "STATUS="+want) {
				return
			}
		}
		t.Fatalf("no %q in %q", want, seen)
	}

	f := &runFlags{}
	if err := newFlagSet("run", f).Parse([]string{"--imds-url=" + hs.URL, "--state-dir=" + d + "/state",
		"--log-dir=" + d + "/log", "--run-dir=" + d + "/run", "--root=" + d + "/root", "--platform=none"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	p := &program{flags: f, stderr: &logs}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(nil)
	until("waiting for a config from the IMDS")
	if seen[0] != "READY=1\nSTATUS=starting" {
		t.Errorf("first notification %q, want READY=1 with the starting status", seen[0])
	}
	if _, err := srv.Publish(ctx, "vm-1", []byte(`{"partial":true}`), nil); err != nil {
		t.Fatal(err)
	}
	until("waiting for final config (partial, generation 1)")
	if _, err := srv.Publish(ctx, "vm-1", []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	until("provisioned generation 2")
	for _, m := range seen[1:] {
		if strings.Contains(m, "READY=1") {
			t.Errorf("READY=1 again: %q", seen)
		}
	}
}
