package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prewarm/prewarm/internal/cputime"
	"github.com/prewarm/prewarm/shared/api"
)

// nopWriter is a reusable ResponseWriter that discards the answer.
type nopWriter struct {
	h    http.Header
	code int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(c int)           { w.code = c }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkGuestConfig is the handler's own cost of GET config (no
// network), next to a bare handler writing the same bytes.
func BenchmarkGuestConfig(b *testing.B) {
	s := newTestServer(b, Options{})
	mustRegister(b, s, "vm-a", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustPublish(b, s, "vm-a", `{"hostname":"web-01","timezone":"Europe/Berlin"}`)
	r := httptest.NewRequest("GET", api.PathConfig, nil)
	r.RemoteAddr = "10.0.0.1:40000"
	r.Header.Set("Metadata", "true")
	doc := s.get("vm-a").cur.Load().doc
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Etag"] = ctJSON, []string{`"1"`}
		w.Write(doc)
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"imds", s.GuestHandler()}, {"bare", bare}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			w := &nopWriter{h: http.Header{}}
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, r)
			}
			if w.code != 0 && w.code != 200 {
				b.Fatal(w.code)
			}
		})
	}
}

// BenchmarkPublishWakesLongPoll is one round of the publish → parked
// long-poll answered path over loopback: a hijacked poll is parked, then a
// durable (fsynced) publish answers it. ns/op is the time from the start
// of the publish until the guest has read its answer.
func BenchmarkPublishWakesLongPoll(b *testing.B) {
	s := newTestServer(b, Options{})
	ln := serveGuestLocal(b, s)
	mustRegister(b, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	gen := mustPublish(b, s, "vm-a", `{}`)
	inst := s.get("vm-a")
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s?wait=true&timeout=30 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nIf-None-Match: \"%d\"\r\n\r\n", api.PathConfig, gen)
		for j := 0; ; j++ {
			inst.pollMu.Lock()
			n := len(inst.polls)
			inst.pollMu.Unlock()
			if n == 1 {
				break
			}
			if j > 10000 {
				b.Fatal("poll never parked")
			}
			time.Sleep(50 * time.Microsecond)
		}
		br := bufio.NewReader(c)
		b.StartTimer()
		if gen, err = s.Publish(context.Background(), "vm-a", []byte(`{"hostname":"h`+strconv.Itoa(i)+`"}`), nil); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
		c.Close()
	}
}

// BenchmarkGuestConfigHTTP is GET config over loopback HTTP/1.1, 16
// kept-alive connections, through everything a guest request meets
// (ServeGuest's listener wrappers, the sweeper's ConnState hook, the
// handler chain), next to a bare net/http server writing the same bytes:
// the in-process form of run.sh's IMDS/bare ratio, for CPU profiles of
// both sides (-cpuprofile; the client's share is the same in both).
func BenchmarkGuestConfigHTTP(b *testing.B) {
	s := newTestServer(b, Options{MaxConnsPerSource: -1, MaxGuestConns: -1})
	ln := serveGuestLocal(b, s)
	mustRegister(b, s, "vm-a", api.Registration{Addresses: []string{"127.0.0.1"}})
	mustPublish(b, s, "vm-a", `{"hostname":"web-01","timezone":"Europe/Berlin","users":[{"name":"ops","groups":["wheel"]}]}`)
	doc := s.get("vm-a").cur.Load().doc
	etag := s.get("vm-a").cur.Load().etag
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The IMDS answer's headers (Date and Content-Length net/http
		// writes for both): the same bytes on the wire.
		h := w.Header()
		h["Content-Type"], h["Etag"], h["Cache-Control"] = ctJSON, etag, cacheNoStor
		w.Write(doc)
	})}
	go bare.Serve(bln)
	b.Cleanup(func() { bare.Close() })
	for _, c := range []struct{ name, addr string }{{"imds", ln.Addr().String()}, {"bare", bln.Addr().String()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 connections on 2 CPUs, as run.sh's wrk -c16
			cpu0 := cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				conn, err := net.Dial("tcp", c.addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				req := []byte("GET " + api.PathConfig + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
				for pb.Next() {
					if _, err := conn.Write(req); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil || resp.StatusCode != 200 {
						b.Errorf("%v %v", resp, err)
						return
					}
					if _, err := br.Discard(int(resp.ContentLength)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// The process's CPU (server and clients) per request: the
			// clients' share is the same for both servers.
			if cpu := cputime.Process() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			}
		})
	}
}
