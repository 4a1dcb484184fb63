package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// fakeHV is an in-memory libvirt whose domains run fake guests that talk
// to a real in-process IMDS through its guest handler, from the address
// their MAC has on the network they sit on (the IMDS tells guests apart
// by source address).
type fakeHV struct {
	t    *testing.T
	imds *server.Server

	mu       sync.Mutex
	doms     map[string]*fakeDom
	hosts    map[string][]virt.DHCPHost // network -> reservations
	overlays map[string]bool
	calls    []string
	// silent makes new guests never report (a VM that never comes up).
	silent bool
	// deaf makes new guests miss their first link bounce (a fast
	// down/up their kernel folded into one event).
	deaf bool
	// defineErr makes DefineAndStart fail.
	defineErr error
	// addHostErr makes AddDHCPHost fail on that network.
	addHostErr map[string]error
	// stops, when set, makes the fake a StopWatcher: its lifecycle events.
	stops chan string
	// leases are dnsmasq's leases that outlive released VMs.
	leases map[string]map[netip.Addr]string
	// routes are the transit routes (the fake Router).
	routes map[netip.Addr]string
	// genAtDefine records, per domain, the IMDS generation when it was
	// defined (a cold claim publishes before boot).
	genAtDefine map[string]int64
	// noTransit makes transit routes carry nothing: a guest reaches the
	// IMDS only from the address its network gives it.
	noTransit bool
}

type fakeDom struct {
	name    string
	meta    virt.Meta
	nic     virt.NIC
	running bool
	events  chan virt.NIC
	seq     uint64
	deaf    bool
	// ip, when set, is the guest's address at start (else the one its
	// NIC's network reserves for it).
	ip string
}

func newFakeHV(t *testing.T, srv *server.Server) *fakeHV {
	return &fakeHV{t: t, imds: srv, doms: map[string]*fakeDom{}, hosts: map[string][]virt.DHCPHost{},
		overlays: map[string]bool{}, genAtDefine: map[string]int64{}, routes: map[netip.Addr]string{}}
}

func (f *fakeHV) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeHV) EnsureNetwork(_ context.Context, n virt.NetworkSpec) error {
	f.record("ensure-network %s", n.Name)
	return nil
}
func (f *fakeHV) EnsureStoragePool(context.Context, string, string) error { return nil }

func (f *fakeHV) DHCPHosts(_ context.Context, network string) ([]virt.DHCPHost, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]virt.DHCPHost(nil), f.hosts[network]...), nil
}

func (f *fakeHV) Leases(_ context.Context, network string) (map[netip.Addr]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Addr]string{}
	for a, m := range f.leases[network] {
		out[a] = m
	}
	return out, nil
}

func (f *fakeHV) AddDHCPHost(_ context.Context, network, mac, ip, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.addHostErr[network]; err != nil {
		return err
	}
	for _, h := range f.hosts[network] {
		if h.MAC == mac || h.IP == ip {
			return fmt.Errorf("reservation of %s/%s exists on %s", mac, ip, network)
		}
	}
	f.hosts[network] = append(f.hosts[network], virt.DHCPHost{MAC: mac, IP: ip, Name: name})
	return nil
}

func (f *fakeHV) RemoveDHCPHost(_ context.Context, network, mac string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	hs := f.hosts[network][:0]
	for _, h := range f.hosts[network] {
		if h.MAC != mac {
			hs = append(hs, h)
		}
	}
	f.hosts[network] = hs
	return nil
}

func (f *fakeHV) ipOf(network, mac string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.hosts[network] {
		if h.MAC == mac {
			return h.IP
		}
	}
	return ""
}

func (f *fakeHV) CreateOverlay(_ context.Context, pool, name, backing string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.overlays[name] = true
	return "/overlays/" + name, nil
}

func (f *fakeHV) DeleteOverlay(_ context.Context, pool, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.overlays, name)
	return nil
}

func (f *fakeHV) Overlays(context.Context, string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.overlays {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeHV) DefineAndStart(_ context.Context, x string) error {
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return err
	}
	m, err := virt.UnmarshalMeta(d.Metadata.XML)
	if err != nil {
		return err
	}
	in := d.Devices.Interfaces[0]
	nic := virt.NIC{MAC: in.MAC.Address, Tap: in.Target.Dev, Network: in.Source.Network.Network, Up: in.Link.State == "up"}
	f.mu.Lock()
	if f.defineErr != nil {
		f.mu.Unlock()
		return f.defineErr
	}
	dom := &fakeDom{name: d.Name, meta: m, nic: nic, running: true, events: make(chan virt.NIC, 8), deaf: f.deaf}
	f.doms[d.Name] = dom
	silent := f.silent
	f.mu.Unlock()
	if inst, ok := f.imds.Instance(d.Name); ok {
		f.mu.Lock()
		f.genAtDefine[d.Name] = inst.Generation
		f.mu.Unlock()
	}
	if !silent {
		go f.guest(dom)
	}
	return nil
}

// addDomain puts a running domain in place as a previous run left it;
// mods adjust its guest before it starts.
func (f *fakeHV) addDomain(name string, m virt.Meta, nic virt.NIC, guest bool, mods ...func(*fakeDom)) {
	dom := &fakeDom{name: name, meta: m, nic: nic, running: true, events: make(chan virt.NIC, 8)}
	for _, mod := range mods {
		mod(dom)
	}
	f.mu.Lock()
	f.doms[name] = dom
	f.overlays[name+".qcow2"] = true
	f.mu.Unlock()
	if guest {
		go f.guest(dom)
	}
}

func (f *fakeHV) Domains(context.Context) ([]virt.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []virt.Domain
	for _, d := range f.doms {
		out = append(out, virt.Domain{Name: d.name, Running: d.running, Meta: d.meta})
	}
	return out, nil
}

func (f *fakeHV) SetMeta(_ context.Context, name string, m virt.Meta) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.doms[name]
	if d == nil {
		return fmt.Errorf("domain %s: %w", name, virt.ErrNotFound)
	}
	d.meta = m
	return nil
}

func (f *fakeHV) UpdateInterface(_ context.Context, name string, nic virt.NIC) error {
	f.record("update-interface %s %s up=%v", name, nic.Network, nic.Up)
	f.mu.Lock()
	d := f.doms[name]
	f.mu.Unlock()
	if d == nil {
		return fmt.Errorf("domain %s: %w", name, virt.ErrNotFound)
	}
	f.mu.Lock()
	d.nic = nic
	f.mu.Unlock()
	select {
	case d.events <- nic:
	default:
	}
	return nil
}

func (f *fakeHV) Destroy(_ context.Context, name string) error {
	f.record("destroy %s", name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.doms[name]; d != nil {
		d.running = false
		close(d.events)
		delete(f.doms, name)
	}
	return nil
}

// DomainStops is the fake's StopWatcher: the stops channel, if set.
func (f *fakeHV) DomainStops(context.Context) (<-chan string, error) {
	if f.stops == nil {
		return nil, errors.New("no lifecycle events in this fake")
	}
	return f.stops, nil
}

// crash stops a running domain behind the controller's back, as QEMU
// dying would, and reports it if the fake has lifecycle events.
func (f *fakeHV) crash(name string) {
	f.mu.Lock()
	if d := f.doms[name]; d != nil {
		d.running = false
	}
	f.mu.Unlock()
	if f.stops != nil {
		f.stops <- name
	}
}

func (f *fakeHV) Suspend(_ context.Context, name string) error {
	f.record("suspend %s", name)
	return nil
}

func (f *fakeHV) Resume(_ context.Context, name string) error {
	f.record("resume %s", name)
	return nil
}

func (f *fakeHV) domain(name string) (virt.Meta, virt.NIC, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.doms[name]
	if d == nil {
		return virt.Meta{}, virt.NIC{}, false
	}
	return d.meta, d.nic, true
}

// guest is a fake agent: it reads its document from the IMDS and reports
// partial-ready or provisioned; after a link bounce on another network it
// reports dhcp-renewed and waits for a newer document. A document whose
// hostname is "fail-me" is reported failed.
func (f *fakeHV) guest(d *fakeDom) {
	etag := ""
	ip := d.ip
	if ip == "" {
		ip = f.ipOf(d.nic.Network, d.nic.MAC)
	}
	var pending []string
	report := func(gen int64, state, event string) {
		d.seq++
		r := status.Report{Seq: d.seq, Time: status.Time{Time: time.Now()}, Generation: gen, State: state, Event: event, AgentVersion: "fake"}
		if event == status.EventDHCPRenewed {
			r.Interface, r.Addresses = "eth0", []string{ip + "/24"}
		}
		if state == status.StateProvisioned || state == status.StatePartialReady {
			r.Steps = []status.Step{{Name: "hostname", OK: true, MS: 7}, {Name: "users", OK: true, MS: 5}}
		}
		if state == status.StateFailed {
			r.Error = "hostname: refused"
		}
		b, _ := json.Marshal(r)
		pending = append(pending, string(b))
	}
	reachable := func() bool {
		f.mu.Lock()
		net := d.nic.Network
		_, routed := f.routes[netip.MustParseAddr(ip)]
		routed = routed && !f.noTransit
		f.mu.Unlock()
		return f.ipOf(net, d.nic.MAC) == ip || routed
	}
	flush := func() {
		// Reports wait while the guest's address reaches nothing, and go
		// in order once it does (as the agent keeps them).
		for len(pending) > 0 && reachable() {
			f.do(ip, http.MethodPost, "/metadata/v1/status", "", pending[0])
			pending = pending[1:]
		}
	}
	for {
		flush()
		// An address of another network than the NIC's reaches nothing
		// (the guest has not renewed since the re-map), and an answer
		// still in flight when the NIC moved is lost.
		code, hdr, body := http.StatusServiceUnavailable, http.Header{}, ""
		if reachable() {
			code, hdr, body = f.do(ip, http.MethodGet, "/metadata/v1/config?wait=true&timeout=1", etag, "")
			if !reachable() {
				code = http.StatusServiceUnavailable
			}
		}
		if code == http.StatusOK {
			etag = hdr.Get("ETag")
			var doc struct {
				Generation int64  `json:"generation"`
				Partial    bool   `json:"partial"`
				Hostname   string `json:"hostname"`
			}
			json.Unmarshal([]byte(body), &doc)
			switch {
			case doc.Hostname == "fail-me":
				report(doc.Generation, status.StateFailed, "")
			case doc.Hostname == "slow-01":
				time.Sleep(3 * time.Second)
				report(doc.Generation, status.StateProvisioned, "")
			case doc.Partial:
				report(doc.Generation, status.StatePartialReady, "")
			default:
				report(doc.Generation, status.StateProvisioned, "")
			}
		}
		select {
		case nic, ok := <-d.events:
			if !ok {
				return
			}
			if nic.Up && d.deaf {
				d.deaf = false
				continue
			}
			if nic.Up {
				if nip := f.ipOf(nic.Network, nic.MAC); nip != ip && nip != "" {
					ip = nip
					report(0, status.StatePartialReady, status.EventDHCPRenewed)
				}
			}
		default:
			f.mu.Lock()
			running := d.running
			f.mu.Unlock()
			if !running {
				return
			}
			if code != http.StatusOK && code != http.StatusNotModified {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// do sends a guest request from ip through the IMDS's guest handler.
func (f *fakeHV) do(ip, method, path, ifNoneMatch, body string) (int, http.Header, string) {
	req := httptest.NewRequest(method, "http://169.254.169.254"+path, strings.NewReader(body))
	req.RemoteAddr = ip + ":40000"
	req.Header.Set("Metadata", "true")
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	f.imds.GuestHandler().ServeHTTP(rec, req)
	return rec.Code, rec.Header(), rec.Body.String()
}

// startIMDS serves a real in-process IMDS; it returns the server and an
// admin client of it.
func startIMDS(t *testing.T) (*server.Server, *client.Client) {
	t.Helper()
	srv, err := server.New(server.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	hs := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(hs.Close)
	return srv, client.NewHTTP(hs.URL)
}

// registration returns the instance's registered addresses.
func registration(t *testing.T, srv *server.Server, id string) []string {
	t.Helper()
	inst, ok := srv.Instance(id)
	if !ok {
		return nil
	}
	return inst.Addresses
}

// AddHost and DelHost make fakeHV the Router too: a guest whose pool
// address is routed to its new bridge still reaches the IMDS.
func (f *fakeHV) AddHost(a netip.Addr, dev string) error {
	f.record("route add %s dev %s", a, dev)
	f.mu.Lock()
	f.routes[a] = dev
	f.mu.Unlock()
	return nil
}

func (f *fakeHV) DelHost(a netip.Addr, dev string) error {
	f.record("route del %s dev %s", a, dev)
	f.mu.Lock()
	delete(f.routes, a)
	f.mu.Unlock()
	return nil
}

var _ Hypervisor = (*fakeHV)(nil)
var _ Router = (*fakeHV)(nil)
var _ IMDS = (*client.Client)(nil)
var _ = api.Registration{}
