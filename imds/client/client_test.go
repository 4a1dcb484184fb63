package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/shared/api"
)

func newServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.New(server.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func TestClientOverTCPWithToken(t *testing.T) {
	s := newServer(t)
	ts := httptest.NewServer(server.RequireBearer("tok", s.AdminHandler()))
	defer ts.Close()
	ctx := context.Background()
	if _, err := client.NewHTTP(ts.URL).List(ctx); client.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("no token: %v", err)
	}
	c := client.NewHTTP(ts.URL, client.WithToken("tok"))
	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	inst, err := c.Register(ctx, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}, Labels: map[string]string{"pool": "a"}})
	if err != nil || inst.ID != "vm-1" || inst.Labels["pool"] != "a" {
		t.Fatalf("%+v %v", inst, err)
	}
	if g, err := c.PublishIfMatch(ctx, "vm-1", []byte(`{"partial":true,"users":[{"name":"alice","password":"pw"}]}`), 0); err != nil || g != 1 {
		t.Fatalf("%d %v", g, err)
	}
	_, err = c.PublishIfMatch(ctx, "vm-1", []byte(`{}`), 0)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != 412 || !strings.Contains(err.Error(), `does not match the current generation "1"`) {
		t.Fatalf("stale If-Match: %v", err)
	}
	_, err = c.Publish(ctx, "vm-1", []byte(`{"hostname":"-bad-","nope":1}`))
	if client.StatusCode(err) != 400 || !errors.As(err, &ce) || len(ce.Body.Fields) == 0 {
		t.Fatalf("invalid config: %v", err)
	}
	t.Logf("invalid config error: %v", err)
	d, err := c.GetConfig(ctx, "vm-1")
	if err != nil || d.Generation != 1 || !d.Partial || d.Users[0].Password != "REDACTED" {
		t.Fatalf("%+v %v", d, err)
	}
	l, err := c.List(ctx)
	if err != nil || len(l) != 1 || l[0].Generation != 1 {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := c.Status(ctx, "vm-1", 0, true, 50*time.Millisecond); !errors.Is(err, client.ErrNotModified) {
		t.Fatalf("status wait: %v", err)
	}
	h, err := c.Status(ctx, "vm-1", 0, false, 0)
	if err != nil || h.InstanceID != "vm-1" || len(h.Reports) != 0 {
		t.Fatalf("%+v %v", h, err)
	}
	if err := c.Delete(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Instance(ctx, "vm-1"); client.StatusCode(err) != 404 {
		t.Fatalf("after delete: %v", err)
	}
}

func TestClientOverUnixSocket(t *testing.T) {
	s := newServer(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := server.ListenAdminSocket(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeAdmin(ln, "")
	c := client.NewUnix(path)
	if _, err := c.Register(context.Background(), "vm-2", api.Registration{HostInterface: "vnet2"}); err != nil {
		t.Fatal(err)
	}
	if in, err := c.Instance(context.Background(), "vm-2"); err != nil || in.HostInterface != "vnet2" {
		t.Fatalf("%+v %v", in, err)
	}
}
