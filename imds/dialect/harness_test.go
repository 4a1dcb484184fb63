package dialect

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/config"
)

// host is a test stand-in for imds/server: it identifies callers by source
// address and runs the guest rules in the contract's order around the
// dialects, as the server does.
type host struct {
	set      *Set
	shutdown chan struct{}

	mu     sync.Mutex
	byAddr map[netip.Addr]*fakeInstance
	seen   []string // "METHOD PATH token=yes|no" of every request
}

func (h *host) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

type fakeInstance struct {
	mu      sync.Mutex
	view    *View
	changed chan struct{}
}

func (f *fakeInstance) Current() (*View, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view, f.changed
}

// publish installs doc as the next generation and wakes waiters.
func (f *fakeInstance) publish(doc *config.Document) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.view
	nv := &View{ID: old.ID, Addresses: old.Addresses, Generation: old.Generation + 1, Doc: doc}
	if doc != nil {
		d := doc.Clone()
		d.InstanceID, d.Generation = old.ID, nv.Generation
		nv.Doc = d
	}
	f.view = nv
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeInstance) remove() {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.view
	f.view = &View{ID: old.ID, Addresses: old.Addresses, Generation: old.Generation, Doc: old.Doc, Deleted: true}
	close(f.changed)
	f.changed = make(chan struct{})
}

func newHost(t *testing.T, names []string, s Settings) *host {
	t.Helper()
	set, err := New(names, s)
	if err != nil {
		t.Fatal(err)
	}
	return &host{set: set, shutdown: make(chan struct{}), byAddr: map[netip.Addr]*fakeInstance{}}
}

// register adds instance id at addr with doc (nil: nothing published).
func (h *host) register(id, addr string, doc *config.Document) *fakeInstance {
	a := netip.MustParseAddr(addr)
	f := &fakeInstance{view: &View{ID: id, Addresses: []string{addr}}, changed: make(chan struct{})}
	if doc != nil {
		f.publish(doc)
	}
	h.mu.Lock()
	if h.byAddr == nil {
		h.byAddr = map[netip.Addr]*fakeInstance{}
	}
	h.byAddr[a] = f
	h.mu.Unlock()
	return f
}

func (h *host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := "no"
	if r.Header.Get(ec2TokenHeader) != "" {
		tok = "yes"
	}
	h.mu.Lock()
	h.seen = append(h.seen, r.Method+" "+r.URL.Path+" token="+tok)
	h.mu.Unlock()
	d := h.set.Route(r.URL.Path)
	if d == nil {
		http.Error(w, `{"error":"no such path"}`, http.StatusNotFound)
		return
	}
	if !d.Check(w, r) {
		return
	}
	if r.Header["X-Forwarded-For"] != nil || r.Header["Forwarded"] != nil {
		d.Error(w, r, http.StatusForbidden, "forwarded requests are refused")
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		d.Error(w, r, http.StatusNotFound, "unknown instance")
		return
	}
	h.mu.Lock()
	inst := h.byAddr[ap.Addr().Unmap()]
	h.mu.Unlock()
	if inst == nil {
		d.Error(w, r, http.StatusNotFound, "unknown instance")
		return
	}
	d.Serve(w, r, inst, h.shutdown)
}

// start serves h on 127.0.0.1 with the ConnContext the server installs.
func (h *host) start(t *testing.T) *httptest.Server {
	t.Helper()
	return h.startWith(t, ConnContext)
}

func (h *host) startWith(t *testing.T, cc func(context.Context, net.Conn) context.Context) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = cc
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src (all of 127.0.0.0/8 is local on Linux), so each test
// instance is a different caller.
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	if runtime.GOOS != "linux" && src != "127.0.0.1" {
		t.Skip("needs 127.0.0.0/8 on loopback (Linux)")
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends one request and returns status, headers and body.
func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func strp(s string) *string { return &s }

// pfxs parses interface addresses of a test document.
func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// The test fleet: three registered instances with different documents and
// one address nobody owns.
const (
	addrA       = "127.0.0.1"
	addrB       = "127.0.0.2"
	addrC       = "127.0.0.3"
	addrUnknown = "127.0.0.4"
	keyAlice1   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice1111111111111111111111111111111111111 alice@laptop"
	keyAlice2   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice2222222222222222222222222222222222222 alice@phone"
	keyBob      = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQBob bob@desk"
	keyCarol    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICarol333333333333333333333333333333333333 carol"
	userDataA   = "#cloud-config\nhostname: from-user-data\npackages: [nginx]\n"
	macA        = "52:54:00:aa:00:01"
)

func docA() *config.Document {
	return &config.Document{
		Hostname: "web-a",
		UserData: strp(userDataA),
		Users: []config.User{
			{Name: "alice", SSHAuthorizedKeys: []string{keyAlice1, keyAlice2}},
			{Name: "bob", SSHAuthorizedKeys: []string{keyBob}},
		},
		Network: &config.Network{Interfaces: []config.Interface{{
			MAC:       config.MustParseMAC(strings.ToUpper(macA)),
			Addresses: pfxs("10.1.0.5/24", "10.1.0.6/24", "2001:db8:1::5/64"),
			Gateway4:  netip.MustParseAddr("10.1.0.1"),
			MTU:       1460,
		}}},
	}
}

func docB() *config.Document {
	return &config.Document{
		Hostname: "web-b",
		Partial:  true,
		Users:    []config.User{{Name: "carol", SSHAuthorizedKeys: []string{keyCarol}}},
	}
}

// fleet registers vm-a (full document), vm-b (partial, no network, no
// user-data) and vm-c (nothing published).
func fleet(h *host) (a, b, c *fakeInstance) {
	return h.register("vm-a", addrA, docA()), h.register("vm-b", addrB, docB()), h.register("vm-c", addrC, nil)
}
