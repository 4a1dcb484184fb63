package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "prewarm-agent ") {
		t.Errorf("version: code %d out %q err %q", code, out.String(), errb.String())
	}
	if code := realMain([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: code %d", code)
	}
}

func TestRunFlagsRoundTrip(t *testing.T) {
	f := &runFlags{}
	fs := newFlagSet("run", f)
	if err := fs.Parse([]string{"--imds-url=http://127.0.0.1:9", "--interfaces=eth0, eth1", "--log-format=json", "--manage-existing-users=admin, ops,"}); err != nil {
		t.Fatal(err)
	}
	if got := f.interfaceList(); len(got) != 2 || got[1] != "eth1" {
		t.Errorf("interfaces %q", got)
	}
	if got := f.manageUserList(); len(got) != 2 || got[0] != "admin" || got[1] != "ops" {
		t.Errorf("existing users to manage %q", got)
	}
	// install passes the flags on to the service's run: they must parse back.
	g := &runFlags{}
	if err := newFlagSet("run", g).Parse(f.args()[1:]); err != nil {
		t.Fatal(err)
	}
	if *g != *f {
		t.Errorf("round trip: %+v != %+v", g, f)
	}
}

func TestSDNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram: %v", err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	if err := sdNotify("READY=1"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Errorf("got %q, %v", b[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}
