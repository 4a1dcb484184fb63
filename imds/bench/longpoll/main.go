// Command longpoll measures prewarm-imds long-polls against a running
// server with --rate 0:
//
//   - fanout: N pollers, each on its own connection from its own 127.x
//     source address, all parked on one instance registered with those N
//     addresses; then one publish. It prints the server's RSS with all
//     parked and the time from the publish until every poller has its
//     answer.
//   - latency: K rounds of one parked poll and one publish; it prints the
//     p50/p99 from the start of the publish until the poll is answered.
//
// Linux only in practice (127.0.0.0/8 as source addresses, /proc for RSS).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/imds/bench/internal/benchkit"
	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

var guest, socket, pid = benchkit.ServerFlags()

var (
	n    = flag.Int("n", 10000, "fanout: pollers")
	k    = flag.Int("k", 1000, "latency: rounds")
	mode = flag.String("mode", "fanout", "fanout, instances or latency")
)

func main() {
	flag.Parse()
	c := client.NewUnix(*socket)
	var err error
	switch *mode {
	case "fanout":
		err = fanout(c)
	case "latency":
		err = latency(c)
	case "instances":
		err = instances(c)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll:", err)
		os.Exit(1)
	}
}

// srcAddr is the i-th source address: 127.1.0.1, 127.1.0.2, ...
func srcAddr(i int) string { return benchkit.SrcAddr(1, i) }

// park opens a connection from src and sends a long-poll; the answer is
// read by wait.
type poller struct {
	conn net.Conn
	br   *bufio.Reader
}

func park(src, inm string, timeout int) (*poller, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", *guest)
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	req := fmt.Sprintf("GET %s?wait=true&timeout=%d HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nIf-None-Match: %s\r\n\r\n", api.PathConfig, timeout, inm)
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	return &poller{conn: conn, br: bufio.NewReaderSize(conn, 4096)}, nil
}

func (p *poller) wait() (int, error) {
	defer p.conn.Close()
	p.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func metrics() (io.ReadCloser, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", *socket)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://imds/metrics")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// goStats picks the Go runtime's view of the server's memory.
func goStats() string {
	body, err := metrics()
	if err != nil {
		return err.Error()
	}
	defer body.Close()
	var out []string
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes":
			v, _ := strconv.ParseFloat(f[1], 64)
			if f[0] != "go_goroutines" {
				f[1] = fmt.Sprintf("%.0fMiB", v/(1<<20))
			}
			out = append(out, strings.TrimPrefix(f[0], "go_memstats_")+"="+f[1])
		}
	}
	return strings.Join(out, " ")
}

func parked(c *client.Client) (int, error) {
	body, err := metrics()
	if err != nil {
		return 0, err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `prewarm_imds_parked_long_polls{api="guest"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, sc.Err()
}

func waitParked(c *client.Client, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		got, err := parked(c)
		if err == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d polls parked after %v (%v)", got, want, within, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// rss is the server's resident memory: now and at its peak.
func rss() string { return benchkit.ProcStatus(*pid, "VmRSS:", "VmHWM:") }

func fanout(c *client.Client) error {
	ctx := context.Background()
	addrs := make([]string, *n)
	for i := range addrs {
		addrs[i] = srcAddr(i)
	}
	// One instance, N addresses: one publish concerns every poller.
	if _, err := c.Register(ctx, "bench-fanout", api.Registration{Addresses: addrs}); err != nil {
		return err
	}
	gen, err := c.Publish(ctx, "bench-fanout", []byte(`{"partial":true,"hostname":"pool"}`))
	if err != nil {
		return err
	}
	fmt.Printf("fanout: %d pollers from %s..%s on one instance\n", *n, addrs[0], addrs[len(addrs)-1])
	before := rss()
	start := time.Now()
	polls := make([]*poller, *n)
	var wg sync.WaitGroup
	errs := make(chan error, *n)
	sem := make(chan struct{}, 256)
	for i := range polls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := park(addrs[i], strconv.Quote(strconv.FormatInt(gen, 10)), 120)
			if err != nil {
				errs <- err
				return
			}
			polls[i] = p
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	if err := waitParked(c, *n, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("fanout: %d parked in %v\n", *n, time.Since(start).Round(time.Millisecond))
	fmt.Printf("fanout: server memory before: %s\n", before)
	fmt.Printf("fanout: server memory with %d parked: %s (Go: %s)\n", *n, rss(), goStats())
	lat := make([]time.Duration, *n)
	codes := make([]int, *n)
	var rwg sync.WaitGroup
	t0 := time.Now()
	for i, p := range polls {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			code, err := p.wait()
			lat[i] = time.Since(t0)
			if err != nil {
				code = -1
			}
			codes[i] = code
		}()
	}
	// Readers are blocked in read; publish now.
	t0 = time.Now()
	if _, err := c.Publish(ctx, "bench-fanout", []byte(`{"hostname":"final"}`)); err != nil {
		return err
	}
	ack := time.Since(t0)
	rwg.Wait()
	ok := 0
	for _, code := range codes {
		if code == 200 {
			ok++
		}
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	fmt.Printf("fanout: publish acknowledged after %v; %d/%d answered 200; all answered %v after the publish started (p50 %v, p99 %v)\n",
		ack.Round(time.Microsecond), ok, *n, lat[len(lat)-1].Round(time.Microsecond), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	fmt.Printf("fanout: server memory after: %s\n", rss())
	if ok != *n {
		return fmt.Errorf("%d pollers did not get 200", *n-ok)
	}
	return c.Delete(ctx, "bench-fanout")
}

func latency(c *client.Client) error {
	ctx := context.Background()
	const src = "127.0.0.99"
	if _, err := c.Register(ctx, "bench-latency", api.Registration{Addresses: []string{src}}); err != nil {
		return err
	}
	gen, err := c.Publish(ctx, "bench-latency", []byte(`{}`))
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, *k)
	acks := make([]time.Duration, 0, *k)
	for i := 0; i < *k; i++ {
		p, err := park(src, strconv.Quote(strconv.FormatInt(gen, 10)), 60)
		if err != nil {
			return err
		}
		if err := waitParked(c, 1, 10*time.Second); err != nil {
			return err
		}
		done := make(chan time.Time, 1)
		go func() {
			p.wait()
			done <- time.Now()
		}()
		time.Sleep(200 * time.Microsecond) // let the reader block
		t0 := time.Now()
		if gen, err = c.Publish(ctx, "bench-latency", []byte(`{"hostname":"r`+strconv.Itoa(i)+`"}`)); err != nil {
			return err
		}
		acks = append(acks, time.Since(t0))
		lat = append(lat, (<-done).Sub(t0))
	}
	pct := func(d []time.Duration, q int) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		return s[(len(s)-1)*q/100].Round(time.Microsecond)
	}
	fmt.Printf("latency: %d rounds; publish start -> parked poll answered: p50 %v, p99 %v, max %v\n", *k, pct(lat, 50), pct(lat, 99), pct(lat, 100))
	fmt.Printf("latency: publish acknowledged (durable, fsynced): p50 %v, p99 %v\n", pct(acks, 50), pct(acks, 99))
	return c.Delete(ctx, "bench-latency")
}

// instances parks one poll on each of N instances (one address each) and
// publishes to each in turn: the other way to have N parked polls.
func instances(c *client.Client) error {
	ctx := context.Background()
	start := time.Now()
	ids := make([]string, *n)
	sem := make(chan struct{}, 16)
	errs := make(chan error, *n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-i%05d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.Register(ctx, ids[i], api.Registration{Addresses: []string{srcAddr(i)}}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Printf("instances: %d registered (durable, 16 at a time) in %v; server memory: %s\n", *n, time.Since(start).Round(time.Millisecond), rss())
	polls := make([]*poller, *n)
	for i := range polls {
		p, err := park(srcAddr(i), `"0"`, 120)
		if err != nil {
			return err
		}
		polls[i] = p
	}
	if err := waitParked(c, *n, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("instances: %d parked, one per instance; server memory: %s (Go: %s)\n", *n, rss(), goStats())
	done := make(chan int, *n)
	for _, p := range polls {
		go func() {
			code, _ := p.wait()
			done <- code
		}()
	}
	start = time.Now()
	for i := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.Publish(ctx, ids[i], []byte(`{}`)); err != nil {
				fmt.Fprintln(os.Stderr, "publish:", err)
			}
		}()
	}
	ok := 0
	for range polls {
		if <-done == 200 {
			ok++
		}
	}
	wg.Wait()
	fmt.Printf("instances: %d publishes (16 at a time) answered %d/%d polls in %v\n", *n, ok, *n, time.Since(start).Round(time.Millisecond))
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.Delete(ctx, id)
		}()
	}
	wg.Wait()
	return nil
}
