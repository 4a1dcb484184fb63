// Command writepath benchmarks the IMDS write path against a running
// prewarm-imds (writepath.sh starts one on a fresh bbolt store): status
// reports from many guests, and publishes to other instances meanwhile.
// It prints numbers and asserts nothing.
//
//  1. registers -instances instances, each with a 127.3.x.y address; the
//     first -guests of them post from theirs (the guests);
//
//  2. steady: for -steady, each guest posts a report every second (each at
//     its own phase), and every -burst-every all of them post at once; a
//     publisher publishes, one at a time, to the instances that are not
//     guests: publish p50/p99/max and reports/s;
//
//  3. saturation: every guest posts -saturate reports back to back (filling
//     its history past its 256 reports) while the publisher goes on: report
//     ingest rate and publish p50/p99/max;
//
//  4. the server's RSS (VmRSS, VmHWM, RssAnon, RssFile of -pid) after each
//     step, and the CPU time the server and this generator used in it (they
//     share the machine's cores).
//
// A guest speaks HTTP/1.1 on its connection itself (-client raw: one write
// of the request, http.ReadResponse of the answer), which costs a fraction
// of net/http's client (-client http: a transport with its reader and
// writer goroutines per connection), so that the generator leaves the
// cores to the server.
//
//	writepath -guest 127.0.0.1:18080 -admin-socket /run/prewarm-imds.sock -pid 1234
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prewarm/prewarm/imds/bench/internal/benchkit"
	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

var guestAddr, socket, pid = benchkit.ServerFlags()

var (
	instances  = flag.Int("instances", 10000, "registered instances")
	guests     = flag.Int("guests", 1000, "instances that post reports (the first of them)")
	steady     = flag.Duration("steady", 10*time.Second, "steady phase: one report per guest per second, plus bursts")
	burstEvery = flag.Duration("burst-every", 3*time.Second, "steady phase: every guest posts at once this often")
	saturate   = flag.Int("saturate", 300, "saturation phase: reports per guest, back to back")
	clientKind = flag.String("client", "raw", "how guests speak HTTP: raw (their own HTTP/1.1 on one connection, cheap) or http (net/http's client)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "writepath:", err)
		os.Exit(1)
	}
}

// srcAddr is guest i's source address: 127.3.0.1, 127.3.0.2, ...
func srcAddr(i int) string { return benchkit.SrcAddr(3, i) }

func id(i int) string { return fmt.Sprintf("wp-%05d", i) }

// guest posts reports from its own source address on one kept-alive
// connection, as an agent does.
type guest struct {
	hc  *http.Client // -client http
	src string       // -client raw: source address, connection, its reader
	c   net.Conn
	br  *bufio.Reader
	buf []byte
	seq uint64
	// body is a realistic report: provisioned, three steps (~330 B).
	rep status.Report
}

func newGuest(i int) *guest {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcAddr(i))}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	g := &guest{src: srcAddr(i), rep: status.Report{
		Generation: 1, State: status.StateProvisioned, AgentVersion: "0.1.0",
		Steps: []status.Step{{Name: "hostname", OK: true, MS: 3, Changed: true}, {Name: "users", OK: true, MS: 41, Changed: true}, {Name: "ssh-keys", OK: true, MS: 2}},
	}}
	if *clientKind == "http" {
		g.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return g
}

func (g *guest) post() error {
	g.seq++
	g.rep.Seq = g.seq
	g.rep.Time = status.Time{Time: time.Now()}
	body, _ := json.Marshal(g.rep)
	if g.hc == nil {
		return g.postRaw(body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+*guestAddr+api.PathStatus, bytes.NewReader(body))
	req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
	req.Header.Set("Content-Type", api.ContentTypeJSON)
	resp, err := g.hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("report answered %d", resp.StatusCode)
	}
	return nil
}

// postRaw posts body as a report over g's own connection, dialled when
// there is none, dropped after an error or an answer that closes it.
func (g *guest) postRaw(body []byte) error {
	if g.c == nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(g.src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", *guestAddr)
		if err != nil {
			return err
		}
		g.c, g.br = c, bufio.NewReaderSize(c, 1024)
	}
	g.buf = fmt.Appendf(g.buf[:0], "POST %s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		api.PathStatus, *guestAddr, api.HeaderMetadata, api.MetadataTrue, api.ContentTypeJSON, len(body))
	g.buf = append(g.buf, body...)
	g.c.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err := func() (*http.Response, error) {
		if _, err := g.c.Write(g.buf); err != nil {
			return nil, err
		}
		return http.ReadResponse(g.br, nil)
	}()
	if err != nil {
		g.c.Close()
		g.c = nil
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		g.c.Close()
		g.c = nil
	}
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("report answered %d", resp.StatusCode)
	}
	return nil
}

// cpu is the CPU time (user + system) this process and the server (-pid)
// have used so far.
type cpu struct{ self, server time.Duration }

// cpuSince says how much CPU the server and the generator used since c,
// over wall time took.
func cpuSince(c cpu, took time.Duration) string {
	n := cpuNow()
	srv, gen := n.server-c.server, n.self-c.self
	return fmt.Sprintf("CPU: server %.1f s (%.0f%% of a core), generator %.1f s (%.0f%% of a core)",
		srv.Seconds(), 100*srv.Seconds()/took.Seconds(), gen.Seconds(), 100*gen.Seconds()/took.Seconds())
}

// publisher publishes to the instances that are not guests, one at a
// time, until stop, recording each publish's latency.
type publisher struct {
	c    *client.Client
	mu   sync.Mutex
	lat  []time.Duration
	errs int
	next int
}

func (p *publisher) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		i := *guests + p.next%(*instances-*guests)
		p.next++
		doc := fmt.Appendf(nil, `{"hostname":"h%d","partial":false}`, p.next)
		start := time.Now()
		_, err := p.c.Publish(ctx, id(i), doc)
		d := time.Since(start)
		p.mu.Lock()
		if err != nil {
			p.errs++
		} else {
			p.lat = append(p.lat, d)
		}
		p.mu.Unlock()
	}
}

// take returns and forgets the latencies recorded so far.
func (p *publisher) take() ([]time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, e := p.lat, p.errs
	p.lat, p.errs = nil, 0
	return l, e
}

func summary(l []time.Duration, errs int, over time.Duration) string {
	if len(l) == 0 {
		return fmt.Sprintf("no publish succeeded (%d errors)", errs)
	}
	slices.Sort(l)
	q := func(f float64) time.Duration { return l[min(len(l)-1, int(f*float64(len(l))))] }
	return fmt.Sprintf("%d publishes (%.0f/s): p50 %v  p99 %v  max %v  errors %d",
		len(l), float64(len(l))/over.Seconds(), q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), l[len(l)-1].Round(10*time.Microsecond), errs)
}

// rss is the server's resident memory: now, at its peak, anonymous and
// file-backed.
func rss() string { return benchkit.ProcStatus(*pid, "VmRSS:", "VmHWM:", "RssAnon:", "RssFile:") }

func run() error {
	if *clientKind != "raw" && *clientKind != "http" {
		return fmt.Errorf("-client %q: want raw or http", *clientKind)
	}
	if *guests <= 0 || *guests >= *instances {
		return fmt.Errorf("-guests %d: must be between 1 and -instances - 1 (%d)", *guests, *instances-1)
	}
	c := client.NewUnix(*socket)
	ctx := context.Background()
	fmt.Printf("server RSS at start: %s\n", rss())

	// 1. Registrations, 8 at a time.
	start := time.Now()
	var wg sync.WaitGroup
	var regErr atomic.Value
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Every instance has its own address; only the
				// guests' are ever a source.
				reg := api.Registration{Addresses: []string{srcAddr(i)}}
				if _, err := c.Register(ctx, id(i), reg); err != nil {
					regErr.Store(fmt.Errorf("register %s: %w", id(i), err))
				}
			}
		}()
	}
	for i := range *instances {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := regErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("registered %d instances (%d guests from %s..%s) in %v; RSS %s\n",
		*instances, *guests, srcAddr(0), srcAddr(*guests-1), time.Since(start).Round(time.Millisecond), rss())

	gs := make([]*guest, *guests)
	for i := range gs {
		gs[i] = newGuest(i)
	}
	pub := &publisher{c: c}
	stopPub, pubDone := make(chan struct{}), make(chan struct{})
	go pub.run(stopPub, pubDone)

	// 2. Steady load with bursts.
	var posted, failed atomic.Int64
	var firstErr atomic.Value
	post := func(g *guest) {
		if err := g.post(); err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return
		}
		posted.Add(1)
	}
	pub.take()
	start = time.Now()
	c0 := cpuNow()
	end := start.Add(*steady)
	for i, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.Duration(i) * time.Second / time.Duration(len(gs))
			next := start.Add(phase)
			nextBurst := start.Add(*burstEvery)
			for {
				at := next
				burst := nextBurst.Before(next)
				if burst {
					at = nextBurst
				}
				if at.After(end) {
					return
				}
				time.Sleep(time.Until(at))
				post(g)
				if burst {
					nextBurst = nextBurst.Add(*burstEvery)
				} else {
					next = next.Add(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	l, e := pub.take()
	fmt.Printf("steady %v: %d guests x 1 report/s + all at once every %v: %d reports (%.0f/s), %d failed\n",
		*steady, len(gs), *burstEvery, posted.Load(), float64(posted.Load())/took.Seconds(), failed.Load())
	fmt.Printf("  publishes meanwhile: %s\n", summary(l, e, took))
	fmt.Printf("  %s\n", cpuSince(c0, took))
	fmt.Printf("  RSS %s\n", rss())

	// 3. Saturation.
	posted.Store(0)
	start = time.Now()
	c0 = cpuNow()
	for _, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range *saturate {
				post(g)
			}
		}()
	}
	wg.Wait()
	took = time.Since(start)
	cpuLine := cpuSince(c0, took)
	l, e = pub.take()
	close(stopPub)
	<-pubDone
	fmt.Printf("saturation: %d guests x %d reports back to back: %d reports in %v = %.0f reports/s, %d failed\n",
		len(gs), *saturate, posted.Load(), took.Round(time.Millisecond), float64(posted.Load())/took.Seconds(), failed.Load())
	fmt.Printf("  publishes meanwhile: %s\n", summary(l, e, took))
	fmt.Printf("  %s\n", cpuLine)
	fmt.Printf("  RSS with full histories (%s reports): %s\n", status256(c, ctx), rss())
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Printf("  first report error: %v\n", err)
	}
	return nil
}

// status256 says how many reports the admin API returns for the first
// guest: a full history keeps 256.
func status256(c *client.Client, ctx context.Context) string {
	h, err := c.Status(ctx, id(0), 0, false, 0)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("guest 0 has %d", len(h.Reports))
}
