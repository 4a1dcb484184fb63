package main

// Multi-host tests: several prewarm-imds processes with different host ids
// share one real etcd (Debian's etcd-server, started on loopback by the
// test; skipped when it is not installed).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/api"
)

// startHost runs prewarm-imds serve --store etcd as host id, its guest
// listener on the loopback address listenIP.
func startHost(t *testing.T, m *etcdtest.Member, id, listenIP string, extra ...string) *imds {
	t.Helper()
	return startHostOn(t, []*etcdtest.Member{m}, id, listenIP, extra...)
}

// startHostOn is startHost against the members ms of one cluster.
func startHostOn(t *testing.T, ms []*etcdtest.Member, id, listenIP string, extra ...string) *imds {
	t.Helper()
	dir := t.TempDir()
	base := &imds{
		dataDir: filepath.Join(dir, "data"),
		socket:  filepath.Join(dir, "run", "admin.sock"),
		guest:   fmt.Sprintf("%s:%d", listenIP, freePort(t)),
	}
	base.args = append([]string{"serve",
		"--listen", base.guest, "--admin-socket", base.socket, "--data-dir", base.dataDir,
		"--log-level", "debug", "--rate", "0",
		"--store", "etcd", "--etcd-endpoints", strings.Join(etcdtest.Endpoints(ms), ","), "--etcd-prefix", "/e2e/" + t.Name() + "/",
		"--host-id", id,
	}, extra...)
	return startIMDS(t, base)
}

// adminGet reads path from p's admin API as text.
func (p *imds) adminGet(path string) (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.socket)
		},
	}}
	resp, err := hc.Get("http://imds-admin" + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually retries cond every 50 ms for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 15s", what)
}

func TestEtcdMultiHost(t *testing.T) {
	m := etcdtest.Start(t)
	hosts := []*imds{
		startHost(t, m, "host-a", "127.0.1.1"),
		startHost(t, m, "host-b", "127.0.2.1"),
		startHost(t, m, "host-c", "127.0.3.1"),
	}
	a, b, c := hosts[0], hosts[1], hosts[2]
	const guestB = "127.0.2.10"
	if _, err := b.admin.Register(ctx(t), "vm-b", api.Registration{Addresses: []string{guestB}}); err != nil {
		t.Fatal(err)
	}
	// A guest parked on host B, nothing published yet...
	type result struct {
		a   answer
		err error
	}
	parked := make(chan result, 1)
	go func() {
		r, err := b.guestDo(guestB, "GET", api.PathConfig+"?wait=true&timeout=20", "")
		parked <- result{r, err}
	}()
	time.Sleep(300 * time.Millisecond)
	// ...is answered by a publish through host A's admin API.
	start := time.Now()
	gen, err := a.admin.Publish(ctx(t), "vm-b", []byte(`{"hostname":"from-a","partial":true}`))
	if err != nil || gen != 1 {
		t.Fatalf("publish through host A: %d, %v", gen, err)
	}
	select {
	case r := <-parked:
		if r.err != nil || r.a.code != 200 || !strings.Contains(r.a.body, `"hostname":"from-a"`) || genTag(r.a.hdr.Get("ETag")) != `"1"` {
			t.Fatalf("parked guest on B: %+v", r)
		}
		t.Logf("publish on A answered the guest parked on B after %v", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the guest parked on host B was not answered")
	}
	// Latency of that path, sequentially: park on B, publish on A.
	var lat []time.Duration
	for i := range 40 {
		have := strconv.Quote(strconv.Itoa(i + 1))
		parked := make(chan result, 1)
		go func() {
			r, err := b.guestDo(guestB, "GET", api.PathConfig+"?wait=true&timeout=20", "", "If-None-Match", have)
			parked <- result{r, err}
		}()
		time.Sleep(20 * time.Millisecond) // let it park
		start := time.Now()
		if _, err := a.admin.Publish(ctx(t), "vm-b", fmt.Appendf(nil, `{"hostname":"lat-%d","partial":true}`, i)); err != nil {
			t.Fatal(err)
		}
		r := <-parked
		if r.err != nil || r.a.code != 200 {
			t.Fatalf("latency round %d: %+v", i, r)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("publish through host A → guest parked on host B answered: p50 %v, p99 %v (40 rounds)", lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond))
	gen0 := int64(41)

	// Host A does not serve B's guest; B does.
	if r := a.mustGuest(guestB, "GET", api.PathConfig, ""); r.code != 404 {
		t.Fatalf("host A answered B's guest: %d %s", r.code, r.body)
	}

	// Status reports flow into etcd and back to every host's view.
	rep := `{"seq":1,"time":"2026-11-21T10:00:00Z","generation":1,"state":"partial-ready","error":"","agentVersion":"t","event":""}`
	if r := b.mustGuest(guestB, "POST", api.PathStatus, rep); r.code != 204 {
		t.Fatalf("status on B: %d %s", r.code, r.body)
	}
	h, err := b.admin.Status(ctx(t), "vm-b", 0, false, 0)
	if err != nil || len(h.Reports) != 1 || h.Reports[0].State != "partial-ready" {
		t.Fatalf("status history on B: %+v, %v", h, err)
	}
	// The control plane sees it in etcd, under one prefix for the fleet.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx(t), "/e2e/"+t.Name()+"/laststatus/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"partial-ready"`) {
		t.Fatalf("laststatus in etcd: %v, %v", resp, err)
	}

	// Concurrent publishers on three hosts: no duplicate, no decrease.
	const workers, each = 3, 8
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts)*workers)
	for hi, p := range hosts {
		for w := range workers {
			name := fmt.Sprintf("host%d-w%d", hi, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				last := int64(0)
				for i := range each {
					g, err := p.admin.Publish(context.Background(), "vm-b", fmt.Appendf(nil, `{"hostname":"h-%d","partial":true}`, i))
					if err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
					if g <= last {
						errs <- fmt.Errorf("%s: generation went from %d to %d", name, last, g)
						return
					}
					last = g
					mu.Lock()
					if other, dup := seen[g]; dup {
						errs <- fmt.Errorf("generation %d given to %s and %s", g, other, name)
					}
					seen[g] = name
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final := gen0 + int64(len(hosts)*workers*each)
	for g := gen0 + 1; g <= final; g++ {
		if _, ok := seen[g]; !ok {
			t.Errorf("generation %d never handed out", g)
		}
	}
	// B serves the last one, with no publish of its own needed.
	eventually(t, "B serves the last generation", func() bool {
		r := b.mustGuest(guestB, "GET", api.PathConfig, "")
		return r.code == 200 && genTag(r.hdr.Get("ETag")) == strconv.Quote(strconv.FormatInt(final, 10))
	})

	// Handover: registering vm-b through host C moves it there.
	parked = make(chan result, 1)
	go func() {
		r, err := b.guestDo(guestB, "GET", api.PathConfig+"?wait=true&timeout=20", "", "If-None-Match", strconv.Quote(strconv.FormatInt(final, 10)))
		parked <- result{r, err}
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := c.admin.Register(ctx(t), "vm-b", api.Registration{Addresses: []string{guestB}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-parked:
		if r.err != nil || r.a.code != 404 {
			t.Fatalf("parked poll on the old host after handover: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll parked on the old host was not answered after handover")
	}
	if r := c.mustGuest(guestB, "GET", api.PathConfig, ""); r.code != 200 || genTag(r.hdr.Get("ETag")) != strconv.Quote(strconv.FormatInt(final, 10)) {
		t.Fatalf("new host after handover: %d %s", r.code, r.hdr.Get("ETag"))
	}
	if g, err := a.admin.Publish(ctx(t), "vm-b", []byte(`{"hostname":"after-handover"}`)); err != nil || g != final+1 {
		t.Fatalf("generation after handover: %d, %v", g, err)
	}
	if r := b.mustGuest(guestB, "GET", api.PathConfig, ""); r.code != 404 {
		t.Fatalf("old host still serves the guest: %d", r.code)
	}
	last := final + 1
	eventually(t, "C serves the publish made through A", func() bool {
		r := c.mustGuest(guestB, "GET", api.PathConfig, "")
		return r.code == 200 && genTag(r.hdr.Get("ETag")) == strconv.Quote(strconv.FormatInt(last, 10))
	})

	// Loss of etcd: degraded, read-only, 503 on publish.
	m.Stop()
	for _, p := range hosts {
		eventually(t, "healthz degraded", func() bool {
			code, body := p.adminGet(api.PathHealthz)
			return code == 200 && strings.Contains(body, `"degraded"`)
		})
		if _, body := p.adminGet(api.PathMetrics); !strings.Contains(body, "prewarm_imds_store_degraded 1") {
			t.Fatalf("metrics while degraded lack prewarm_imds_store_degraded 1")
		}
	}
	if r := c.mustGuest(guestB, "GET", api.PathConfig, ""); r.code != 200 || !strings.Contains(r.body, "after-handover") {
		t.Fatalf("guest while etcd is down: %d %s", r.code, r.body)
	}
	_, err = a.admin.Publish(ctx(t), "vm-b", []byte(`{"hostname":"refused"}`))
	var ae *client.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Body.Error == "" {
		t.Fatalf("publish while etcd is down: %v", err)
	}
	// A guest parked on C while etcd is down gets the publish made once
	// it is back.
	parked = make(chan result, 1)
	go func() {
		r, err := c.guestDo(guestB, "GET", api.PathConfig+"?wait=true&timeout=25", "", "If-None-Match", strconv.Quote(strconv.FormatInt(last, 10)))
		parked <- result{r, err}
	}()
	m.Restart()
	m.WaitHealthy()
	for _, p := range hosts {
		eventually(t, "healthz ok again", func() bool {
			_, body := p.adminGet(api.PathHealthz)
			return strings.Contains(body, `"ok"`)
		})
	}
	if g, err := a.admin.Publish(ctx(t), "vm-b", []byte(`{"hostname":"recovered"}`)); err != nil || g != last+1 {
		t.Fatalf("publish after recovery: %d, %v", g, err)
	}
	select {
	case r := <-parked:
		if r.err != nil || r.a.code != 200 || !strings.Contains(r.a.body, "recovered") {
			t.Fatalf("guest parked across the outage: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the guest parked across the outage was not answered")
	}

	// A control plane writing straight into etcd (docs/etcd.md) wakes the
	// guest parked on the host that serves it.
	next := last + 2
	parked = make(chan result, 1)
	go func() {
		r, err := c.guestDo(guestB, "GET", api.PathConfig+"?wait=true&timeout=20", "", "If-None-Match", strconv.Quote(strconv.FormatInt(next-1, 10)))
		parked <- result{r, err}
	}()
	time.Sleep(200 * time.Millisecond)
	p := "/e2e/" + t.Name() + "/"
	get := func(k string) (string, int64) {
		resp, err := cli.Get(ctx(t), p+k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return "", 0
		}
		return string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
	}
	host, placeRev := get("placement/vm-b")
	_, cfgRev := get("hosts/" + host + "/configs/vm-b")
	counter, genRev := get("generations/vm-b")
	if host != "host-c" || counter != strconv.FormatInt(next-1, 10) {
		t.Fatalf("etcd before the control plane's write: placement %q, counter %q", host, counter)
	}
	cp, err := cli.Txn(ctx(t)).If(
		clientv3.Compare(clientv3.ModRevision(p+"placement/vm-b"), "=", placeRev),
		clientv3.Compare(clientv3.ModRevision(p+"hosts/host-c/configs/vm-b"), "=", cfgRev),
		clientv3.Compare(clientv3.ModRevision(p+"generations/vm-b"), "=", genRev),
	).Then(
		clientv3.OpPut(p+"generations/vm-b", strconv.FormatInt(next, 10)),
		clientv3.OpPut(p+"hosts/host-c/configs/vm-b", fmt.Sprintf(`{"instanceId":"vm-b","generation":%d,"hostname":"control-plane"}`, next)),
	).Commit()
	if err != nil || !cp.Succeeded {
		t.Fatalf("control plane write: %v, %v", cp, err)
	}
	select {
	case r := <-parked:
		if r.err != nil || r.a.code != 200 || !strings.Contains(r.a.body, "control-plane") || genTag(r.a.hdr.Get("ETag")) != strconv.Quote(strconv.FormatInt(next, 10)) {
			t.Fatalf("guest after the control plane's write: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the control plane's write did not wake the guest")
	}
}

// TestEtcdHostStartsWhileEtcdDown: a host started while etcd is
// unreachable comes up degraded and serves once etcd answers.
func TestEtcdHostStartsWhileEtcdDown(t *testing.T) {
	m := etcdtest.Start(t)
	a := startHost(t, m, "host-a", "127.0.4.1")
	const guest = "127.0.4.10"
	if _, err := a.admin.Register(ctx(t), "vm-1", api.Registration{Addresses: []string{guest}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.admin.Publish(ctx(t), "vm-1", []byte(`{"hostname":"kept"}`)); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	b := startHost(t, m, "host-b", "127.0.5.1")
	if code, body := b.adminGet(api.PathHealthz); code != 200 || !strings.Contains(body, "degraded") {
		t.Fatalf("healthz of a host started without etcd: %d %s", code, body)
	}
	m.Restart()
	m.WaitHealthy()
	eventually(t, "host B healthy", func() bool {
		_, body := b.adminGet(api.PathHealthz)
		return strings.Contains(body, `"ok"`)
	})
	// vm-1 moves to B and is served there with its document.
	if _, err := b.admin.Register(ctx(t), "vm-1", api.Registration{Addresses: []string{guest}}); err != nil {
		t.Fatal(err)
	}
	if r := b.mustGuest(guest, "GET", api.PathConfig, ""); r.code != 200 || !strings.Contains(r.body, "kept") {
		t.Fatalf("after etcd came back: %d %s", r.code, r.body)
	}
}

// TestEtcdClusterMemberLoss: with a three-member etcd, one member down and
// publishes keep working; two down and the hosts serve read-only and say
// so; both back and everything catches up, nothing published lost.
func TestEtcdClusterMemberLoss(t *testing.T) {
	ms := etcdtest.StartCluster(t, 3)
	a := startHostOn(t, ms, "host-a", "127.0.6.1")
	b := startHostOn(t, ms, "host-b", "127.0.7.1")
	const guest = "127.0.7.10"
	if _, err := b.admin.Register(ctx(t), "vm-1", api.Registration{Addresses: []string{guest}}); err != nil {
		t.Fatal(err)
	}
	served := func(gen string) func() bool {
		return func() bool {
			r := b.mustGuest(guest, "GET", api.PathConfig, "")
			return r.code == 200 && genTag(r.hdr.Get("ETag")) == strconv.Quote(gen)
		}
	}
	publish := func(want int64) {
		t.Helper()
		if g, err := a.admin.Publish(ctx(t), "vm-1", fmt.Appendf(nil, `{"hostname":"g%d"}`, want)); err != nil || g != want {
			t.Fatalf("publish %d: %d, %v", want, g, err)
		}
	}
	publish(1)
	ms[0].Stop()
	publish(2)
	publish(3)
	eventually(t, "B serves generation 3 with one member down", served("3"))
	for _, p := range []*imds{a, b} {
		if _, body := p.adminGet(api.PathHealthz); !strings.Contains(body, `"ok"`) {
			t.Fatalf("healthz with one member of three down: %s", body)
		}
	}
	ms[1].Stop()
	for _, p := range []*imds{a, b} {
		eventually(t, "degraded without quorum", func() bool {
			_, body := p.adminGet(api.PathHealthz)
			return strings.Contains(body, `"degraded"`)
		})
	}
	var ae *client.Error
	if _, err := a.admin.Publish(ctx(t), "vm-1", []byte(`{}`)); !errors.As(err, &ae) || ae.StatusCode != 503 {
		t.Fatalf("publish without quorum: %v", err)
	}
	if !served("3")() {
		t.Fatal("B stopped serving the last document without quorum")
	}
	ms[0].Restart()
	ms[1].Restart()
	for _, m := range ms {
		m.WaitHealthy()
	}
	for _, p := range []*imds{a, b} {
		eventually(t, "healthy again", func() bool {
			_, body := p.adminGet(api.PathHealthz)
			return strings.Contains(body, `"ok"`)
		})
	}
	publish(4)
	eventually(t, "B serves generation 4 after recovery", served("4"))
}

// TestEtcdTLS: the client certificate, key and CA come from files named
// on the command line (the password file is tested in etcdstore).
func TestEtcdTLS(t *testing.T) {
	m, files := etcdtest.StartTLS(t)
	dir := t.TempDir()
	base := &imds{
		dataDir: filepath.Join(dir, "data"),
		socket:  filepath.Join(dir, "run", "admin.sock"),
		guest:   fmt.Sprintf("127.0.8.1:%d", freePort(t)),
	}
	base.args = []string{"serve",
		"--listen", base.guest, "--admin-socket", base.socket, "--data-dir", base.dataDir, "--rate", "0",
		"--store", "etcd", "--etcd-endpoints", m.ClientURL, "--host-id", "host-tls",
		"--etcd-cert", files.ClientCert, "--etcd-key", files.ClientKey, "--etcd-ca", files.CA,
	}
	p := startIMDS(t, base)
	if _, err := p.admin.Register(ctx(t), "vm-t", api.Registration{Addresses: []string{"127.0.8.10"}}); err != nil {
		t.Fatal(err)
	}
	if g, err := p.admin.Publish(ctx(t), "vm-t", []byte(`{"hostname":"tls"}`)); err != nil || g != 1 {
		t.Fatalf("publish over TLS: %d, %v", g, err)
	}
	if r := p.mustGuest("127.0.8.10", "GET", api.PathConfig, ""); r.code != 200 || !strings.Contains(r.body, `"tls"`) {
		t.Fatalf("guest: %d %s", r.code, r.body)
	}
	if _, body := p.adminGet(api.PathHealthz); !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz: %s", body)
	}
	// Without the client certificate etcd refuses the host: it starts
	// degraded and refuses writes.
	base2 := &imds{dataDir: filepath.Join(dir, "data2"), socket: filepath.Join(dir, "run2", "admin.sock"), guest: fmt.Sprintf("127.0.8.2:%d", freePort(t))}
	base2.args = []string{"serve", "--listen", base2.guest, "--admin-socket", base2.socket, "--data-dir", base2.dataDir,
		"--store", "etcd", "--etcd-endpoints", m.ClientURL, "--host-id", "host-nocert", "--etcd-ca", files.CA}
	q := startIMDS(t, base2)
	eventually(t, "degraded without a client certificate", func() bool {
		_, body := q.adminGet(api.PathHealthz)
		return strings.Contains(body, `"degraded"`)
	})
	if _, err := q.admin.Register(ctx(t), "vm-x", api.Registration{Addresses: []string{"127.0.8.11"}}); client.StatusCode(err) != 503 {
		t.Fatalf("register without a client certificate: %v", err)
	}
}
