package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

var (
	ctJSON      = []string{api.ContentTypeJSON}
	noSniff     = []string{"nosniff"}
	cacheNoStor = []string{"no-store"}
)

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeJSON answers code with v encoded as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"encode response"}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = ctJSON
	h["X-Content-Type-Options"] = noSniff
	h["Cache-Control"] = cacheNoStor
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

// writeError answers with the error object.
func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, args...)})
}

// writeErr answers with err: an *Error as is, anything else as 500.
func writeErr(w http.ResponseWriter, err error) {
	var e *Error
	if errors.As(err, &e) {
		writeJSON(w, e.Status, e.Body)
		return
	}
	writeError(w, http.StatusInternalServerError, "%v", err)
}

// statusWriter records the answer's status code for metrics and for the
// recoverer.
type statusWriter struct {
	http.ResponseWriter
	code     int
	hijacked bool   // a parked long-poll; its answer is counted when written
	route    string // the metrics route when not derived from the path
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streaming answers through (http.Flusher).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// statusWriters are recoverer's statusWriters, reused once their request
// is over (a hijacked long-poll's writes go to its connection, not
// through its statusWriter).
var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// recoverer turns a panic in h into a logged 500 (when nothing was written
// yet), so no request can take the server down or leave a goroutine broken,
// and counts each answer.
func (s *Server) recoverer(api string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := statusWriters.Get().(*statusWriter)
		sw.ResponseWriter = w
		defer s.finish(api, sw, r)
		h.ServeHTTP(sw, r)
	})
}

// finish is recoverer's deferred end of a request: the panic's 500, the
// answer's count, sw back to its pool.
func (s *Server) finish(api string, sw *statusWriter, r *http.Request) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.m.panics.Inc()
		if ok, suppressed := s.panicLog.allow(time.Now()); ok {
			s.log.Error("handler panic", "api", api, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "suppressed", suppressed, "stack", string(debug.Stack()))
		} else {
			s.log.Debug("handler panic", "api", api, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
		}
		if sw.code == 0 {
			writeError(sw, http.StatusInternalServerError, "internal error")
		}
	}
	if !sw.hijacked {
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		route := sw.route
		if route == "" {
			route = routeOf(r)
		}
		s.m.request(api, route, code)
	}
	*sw = statusWriter{}
	statusWriters.Put(sw)
}

// panicLogInterval is how often a recovered panic's stack is logged at
// most: a guest that found a request which panics a handler could otherwise
// write a stack of a few KB to the host's log with every request.
const panicLogInterval = time.Minute

// panicLog bounds the log lines of recovered panics. Every panic is still
// answered 500 and counted in prewarm_imds_handler_panics_total; only the
// first in each interval is logged at error level with its stack, the rest
// at debug level without one, and the next logged line says how many were
// left out.
type panicLog struct {
	last       atomic.Int64 // unix nanoseconds of the last logged panic
	suppressed atomic.Int64
}

// allow reports whether the panic happening at now may be logged with its
// stack, and how many were suppressed since the last one that was.
func (p *panicLog) allow(now time.Time) (ok bool, suppressed int64) {
	last := p.last.Load()
	if last != 0 && now.UnixNano()-last < int64(panicLogInterval) || !p.last.CompareAndSwap(last, now.UnixNano()) {
		p.suppressed.Add(1)
		return false, 0
	}
	return true, p.suppressed.Swap(0)
}
