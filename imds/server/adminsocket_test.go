package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenAdminSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "admin.sock")
	ln, err := ListenAdminSocket(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := ListenAdminSocket(path, 0o660); err == nil || !strings.Contains(err.Error(), "in use by a live server") {
		t.Fatalf("live socket: %v", err)
	}
	// A crashed server leaves its socket file behind: replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	ln2, err := ListenAdminSocket(path, 0o660)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
	// A path that is not a socket is never removed.
	reg := filepath.Join(dir, "file")
	os.WriteFile(reg, []byte("keep"), 0o600)
	if _, err := ListenAdminSocket(reg, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(reg); string(b) != "keep" {
		t.Fatal("regular file changed")
	}
}
