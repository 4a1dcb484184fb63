package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
