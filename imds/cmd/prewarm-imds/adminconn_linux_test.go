package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
)

// prewarm-imds links no net/http Transport (the CLI sends with adminConn):
// a Transport brought back, e.g. by a client.NewUnix or an http.Client in
// the binary, fails here.
func TestLeanBinaryLinksNoHTTPTransport(t *testing.T) {
	out, err := exec.Command("go", "tool", "nm", binPath).Output()
	if err != nil {
		t.Fatalf("go tool nm %s: %v", binPath, err)
	}
	if !strings.Contains(string(out), "main.adminConn.Do") {
		t.Fatal("no main.adminConn.Do among the binary's symbols: is the symbol table there?")
	}
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, "net/http.(*Transport).") {
			t.Fatalf("prewarm-imds links net/http's Transport: %s", strings.TrimSpace(l))
		}
	}
}

// A request whose context ends while the server says nothing returns the
// context's error (what the CLI's explain turns into exit 4), and a
// server that answers is read through the Unix socket.
func TestAdminConnUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hang := make(chan struct{})
	defer close(hang)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-hang
			return
		}
		if r.Host != "imds-admin" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "host "+r.Host+" auth "+r.Header.Get("Authorization"), http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	c := client.New("http://imds-admin", adminConn{network: "unix", addr: sock}, client.WithToken("tok"))
	if err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("healthz: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://imds-admin/hang", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := adminConn{network: "unix", addr: sock}.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request the server never answers returned an answer")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
}

// A URL of another scheme is refused by name.
func TestAdminConnScheme(t *testing.T) {
	req, err := http.NewRequest(http.MethodGet, "ftp://127.0.0.1/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (adminConn{network: "tcp"}).Do(req); err == nil || !strings.Contains(err.Error(), "scheme must be http or https") {
		t.Fatalf("ftp URL: %v, want the scheme refused", err)
	}
}

// A body the server refuses before reading it all (a document over the
// limit: 413, then the server closes the connection) comes back as the
// server's answer, as net/http's Transport returns it, not as the write's
// broken pipe or reset.
func TestAdminConnAnswerBeforeBodyEnd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		r.Body.Read(buf)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write([]byte(`{"error":"config document exceeds 1024 bytes"}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c := client.New("http://imds-admin", adminConn{network: "unix", addr: sock})
	_, err = c.Publish(context.Background(), "vm-1", bytes.Repeat([]byte("x"), 16<<20))
	if client.StatusCode(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("publish of 16 MiB: %v, want the server's 413", err)
	}
}

// https verifies the server's certificate: one signed by nobody the host
// trusts (httptest's) is refused, and the request never reaches the
// handler with its bearer token.
func TestAdminConnVerifiesTLS(t *testing.T) {
	reached := make(chan string, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- r.Header.Get("Authorization")
	}))
	defer srv.Close()
	c := client.New(srv.URL, adminConn{network: "tcp"}, client.WithToken("tok"))
	err := c.Healthz(context.Background())
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("healthz of a server with an untrusted certificate: %v, want x509.UnknownAuthorityError", err)
	}
	select {
	case h := <-reached:
		t.Fatalf("the request reached the server (Authorization %q)", h)
	default:
	}
}

// A request over https whose context ends while the server holds the
// answer returns the context's error at once, and the connection is
// closed (the server's handler sees its request end): the close on the
// context's goroutine reaches the TLS connection through the socket under
// it. (It closes the socket Do dialled, not the variable Do assigns the
// TLS connection to. -race does not catch the old close of that variable
// here: in one process, client and server goroutines share locks that
// order the two accesses.)
func TestAdminConnHTTPSCancel(t *testing.T) {
	reached := make(chan struct{}, 1)
	ended := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok\n"))
			return
		}
		reached <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- struct{}{}
		case <-release:
		}
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := client.New(srv.URL, adminConn{network: "tcp", roots: roots}, client.WithToken("tok"))

	// Trusted: a request gets its answer.
	if err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("healthz over https with the server's certificate trusted: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.GetConfig(ctx, "vm-1")
		errc <- err
	}()
	select {
	case <-reached:
	case err := <-errc:
		t.Fatalf("get returned before the server held it: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the server")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("get cancelled while the server held it: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get did not return after its context was cancelled")
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's request did not end: the connection stayed open")
	}
}
