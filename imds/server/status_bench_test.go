package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/internal/cputime"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// feedOnlyStore is a bbolt store whose AppendStatus costs (almost)
// nothing: it delivers the report to the feed as the store's own feed
// would, and returns, without writing it. It measures the server's side of
// a status report without the store's.
type feedOnlyStore struct {
	store.Store
	mu sync.Mutex // the feed's fn is called by one goroutine at a time
	fn func(store.Event)
}

func (f *feedOnlyStore) Feed(ctx context.Context, fn func(store.Event)) error {
	return f.Store.Feed(ctx, func(ev store.Event) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.fn = fn
		fn(ev)
	})
}

func (f *feedOnlyStore) AppendStatus(ctx context.Context, id string, r status.Report) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fn != nil {
		rc := r
		f.fn(store.Event{Type: store.EventStatus, ID: id, Status: &rc})
	}
	return nil
}

// BenchmarkGuestStatusHTTP is POST /metadata/v1/status over loopback
// HTTP/1.1: 16 kept-alive connections, each from its own 127.4.x.y source
// and instance, posting the writepath benchmark's report (provisioned,
// three steps, ~330 bytes) with a new seq each time, through everything a
// guest request meets (listener wrappers, sweeper, handler chain, decode,
// validation, dedupe, feed, fleet, metrics). "feed" is the server's side
// alone (a store that delivers the report to its feed and writes nothing);
// "bolt" adds the real bbolt store. cpu-µs/op is the process's CPU
// (server and clients) per report (getrusage; Linux).
func BenchmarkGuestStatusHTTP(b *testing.B) {
	for _, c := range []struct {
		kind  string
		conns int
	}{{"feed", 16}, {"bolt", 16}, {"feed", 1000}} {
		kind, conns := c.kind, c.conns
		b.Run(fmt.Sprintf("%s/conns=%d", kind, conns), func(b *testing.B) {
			st, err := store.OpenBolt(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			var s *Server
			if kind == "feed" {
				s = newTestServer(b, Options{Store: &feedOnlyStore{Store: st}, MaxConnsPerSource: -1, MaxGuestConns: -1, Logger: discardLogger()})
			} else {
				s = newTestServer(b, Options{Store: st, MaxConnsPerSource: -1, MaxGuestConns: -1, Logger: discardLogger()})
			}
			ln := serveGuestLocal(b, s)
			for i := range conns {
				mustRegister(b, s, fmt.Sprintf("vm-%02d", i), api.Registration{Addresses: []string{srcAddr(i)}})
			}
			var next atomic.Int32
			b.ReportAllocs()
			b.SetParallelism(conns / 2) // 16 goroutines on 2 CPUs
			cpu0 := cputime.Process()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1) - 1)
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcAddr(i % conns))}}
				conn, err := d.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				rep := status.Report{
					Generation: 1, State: status.StateProvisioned, AgentVersion: "0.1.0",
					Steps: []status.Step{{Name: "hostname", OK: true, MS: 3, Changed: true}, {Name: "users", OK: true, MS: 41, Changed: true}, {Name: "ssh-keys", OK: true, MS: 2}},
				}
				var buf []byte
				for pb.Next() {
					rep.Seq++
					rep.Time = status.Time{Time: time.Now()}
					body, _ := json.Marshal(rep)
					buf = fmt.Appendf(buf[:0], "POST %s HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", api.PathStatus, len(body))
					buf = append(buf, body...)
					if _, err := conn.Write(buf); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil || resp.StatusCode != http.StatusNoContent {
						b.Errorf("%v %v", resp, err)
						return
					}
					resp.Body.Close()
				}
			})
			b.StopTimer()
			if cpu := cputime.Process() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			}
		})
	}
}

// discardLogger logs nothing, at the CLI's default level (info), so that
// a benchmark pays what a production server pays for its debug lines.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// srcAddr is benchmark guest i's loopback source address: 127.4.0.1, ...
func srcAddr(i int) string { return fmt.Sprintf("127.4.%d.%d", i/250, i%250+1) }

// BenchmarkDecodeReport is the decoding and validation of the writepath
// benchmark's report (provisioned, three steps).
func BenchmarkDecodeReport(b *testing.B) {
	rep := status.Report{
		Seq: 7, Time: status.Time{Time: time.Now()}, Generation: 1, State: status.StateProvisioned, AgentVersion: "0.1.0",
		Steps: []status.Step{{Name: "hostname", OK: true, MS: 3, Changed: true}, {Name: "users", OK: true, MS: 41, Changed: true}, {Name: "ssh-keys", OK: true, MS: 2}},
	}
	body, err := json.Marshal(rep)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, e := decodeReport(body); e != nil {
			b.Fatal(e)
		}
	}
}
