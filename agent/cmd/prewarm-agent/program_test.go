package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
)

// startIMDS serves a real in-process IMDS on loopback with vm-1
// registered for 127.0.0.1, until the test ends; it returns its URL.
func startIMDS(t *testing.T) string {
	t.Helper()
	srv, err := server.New(server.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if _, _, err := srv.Register(context.Background(), "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.GuestHandler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestProgramReadyAndStop runs the service program against a real
// in-process IMDS: READY=1 reaches $NOTIFY_SOCKET only once the first
// report is in the status log, and Stop returns within its deadline.
func TestProgramReadyAndStop(t *testing.T) {
	imdsURL := startIMDS(t)

	d := t.TempDir()
	sock := filepath.Join(d, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram: %v", err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	f := &runFlags{}
	if err := newFlagSet("run", f).Parse([]string{"--imds-url=" + imdsURL, "--state-dir=" + d + "/state",
		"--log-dir=" + d + "/log", "--run-dir=" + d + "/run", "--root=" + d + "/root", "--platform=none"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	p := &program{flags: f, stderr: &logs}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil || !strings.HasPrefix(string(b[:n]), "READY=1\nSTATUS=") {
		t.Fatalf("notify: %q, %v", b[:n], err)
	}
	if fi, err := os.Stat(filepath.Join(d, "log", "status.jsonl")); err != nil || fi.Size() == 0 {
		t.Errorf("READY=1 before the first report was written: %v", err)
	}
	t0 := time.Now()
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > stopDeadline {
		t.Errorf("Stop took %v", d)
	}
	// STATUS= lines of the reports before it, then STOPPING=1.
	for i := 0; ; i++ {
		n, err = c.Read(b)
		if err == nil && string(b[:n]) == "STOPPING=1" {
			break
		}
		if err != nil || i == 10 || !strings.HasPrefix(string(b[:n]), "STATUS=") {
			t.Fatalf("notify on stop: %q, %v", b[:n], err)
		}
	}
}
