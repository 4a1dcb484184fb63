package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

var (
	allowGET  = []string{http.MethodGet}
	allowPOST = []string{http.MethodPost}
)

// serveGuest applies the guest rules in the contract's order (405, 400,
// 403, 404, 429) and dispatches.
func (s *Server) serveGuest(w http.ResponseWriter, r *http.Request) {
	if set := s.opts.Dialects; set != nil {
		if d := set.Route(r.URL.Path); d != nil {
			s.serveDialect(w, r, d)
			return
		}
	}
	var allow []string
	switch r.URL.Path {
	case api.PathConfig, api.PathInstance:
		allow = allowGET
	case api.PathStatus:
		allow = allowPOST
	}
	if s.opts.Dialects != nil && !s.opts.Dialects.Native() {
		allow = nil // the native API is turned off on this server
	}
	if allow != nil && r.Method != allow[0] {
		w.Header()["Allow"] = allow
		writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow[0])
		return
	}
	if md := r.Header[api.HeaderMetadata]; len(md) != 1 || !strings.EqualFold(md[0], api.MetadataTrue) {
		writeError(w, http.StatusBadRequest, "header %q is required", "Metadata: true")
		return
	}
	if _, ok := r.Header[api.HeaderForwardedFor]; ok {
		writeError(w, http.StatusForbidden, "forwarded requests are refused (header %s)", api.HeaderForwardedFor)
		return
	}
	if _, ok := r.Header[api.HeaderForwarded]; ok {
		writeError(w, http.StatusForbidden, "forwarded requests are refused (header %s)", api.HeaderForwarded)
		return
	}
	if allow == nil {
		writeError(w, http.StatusNotFound, "no such path: %s", r.URL.Path)
		return
	}
	inst := s.identify(r)
	if inst == nil {
		closeUnknown(w)
		writeError(w, http.StatusNotFound, "unknown instance")
		return
	}
	if secs := s.spend(inst); secs > 0 {
		w.Header().Set(api.HeaderRetryAfter, strconv.FormatInt(secs, 10))
		writeError(w, http.StatusTooManyRequests, "rate limit exceeded: retry after %d s", secs)
		return
	}
	switch r.URL.Path {
	case api.PathConfig:
		s.guestConfig(w, r, inst)
	case api.PathStatus:
		s.guestStatus(w, r, inst)
	case api.PathInstance:
		sn := inst.cur.Load()
		addrs := sn.reg.Addresses
		if len(addrs) == 0 {
			// Known by its host interface: its address is whatever DHCP
			// gave it, so answer with the one it called from.
			addrs = []string{}
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				addrs = append(addrs, ap.Addr().Unmap().String())
			}
		}
		writeJSON(w, http.StatusOK, api.InstanceInfo{InstanceID: inst.id, Addresses: addrs})
	}
}

// closeUnknown makes an unknown caller's connection close after the
// answer. Its next request then comes on a new connection, accepted by the
// listener of its host interface if that interface has been registered
// meanwhile: a kept-alive connection accepted by the device-less listener
// before the instance was registered would otherwise stay unknown forever.
func closeUnknown(w http.ResponseWriter) { w.Header().Set("Connection", "close") }

// spend takes one token from inst's bucket. When the bucket is empty it
// takes none and returns the seconds to wait (at least 1), else 0.
func (s *Server) spend(inst *instance) int64 {
	lim := inst.limiter
	if lim == nil {
		return 0
	}
	now := s.opts.Now()
	res := lim.ReserveN(now, 1)
	d := res.DelayFrom(now)
	if res.OK() && d <= 0 {
		return 0
	}
	res.CancelAt(now)
	s.m.rateLimited.Inc()
	return max(1, int64(math.Ceil(d.Seconds())))
}

// serveDialect applies the guest rules in the contract's order around a
// cloud dialect: the dialect's own method and header rules (405, 400,
// 403), forwarding headers, identity, rate limit, each answered in the
// dialect's error format.
func (s *Server) serveDialect(w http.ResponseWriter, r *http.Request, d dialect.Dialect) {
	if sw, ok := w.(*statusWriter); ok {
		sw.route = "dialect:" + d.Name()
	}
	if !d.Check(w, r) {
		return
	}
	for _, h := range []string{api.HeaderForwardedFor, api.HeaderForwarded} {
		if _, ok := r.Header[h]; ok {
			d.Error(w, r, http.StatusForbidden, "forwarded requests are refused (header "+h+")")
			return
		}
	}
	inst := s.identify(r)
	if inst == nil {
		closeUnknown(w)
		d.Error(w, r, http.StatusNotFound, "unknown instance")
		return
	}
	if secs := s.spend(inst); secs > 0 {
		w.Header().Set(api.HeaderRetryAfter, strconv.FormatInt(secs, 10))
		d.Error(w, r, http.StatusTooManyRequests, fmt.Sprintf("rate limit exceeded: retry after %d s", secs))
		return
	}
	d.Serve(w, r, inst, s.shutdown)
}

// identify attributes r to an instance, by host interface or source
// address, never by anything the request says.
func (s *Server) identify(r *http.Request) *instance {
	if gc, ok := r.Context().Value(guestConnKey{}).(*guestConn); ok {
		return s.identifyConn(gc)
	}
	iface, _ := r.Context().Value(ifaceKey{}).(string)
	addr, _ := guestnet.SourceAddr(r.RemoteAddr)
	return s.lookup(iface, addr, false)
}

// waitParams are the long-poll query parameters.
type waitParams struct {
	wait    bool
	timeout time.Duration
}

// parseWait reads wait= and timeout= (seconds, default 60, clamped to 300).
func parseWait(q url.Values) (waitParams, error) {
	p := waitParams{timeout: api.DefaultWaitSeconds * time.Second}
	if v, ok := q["wait"]; ok {
		switch strings.ToLower(v[0]) {
		case "true", "1":
			p.wait = true
		case "false", "0", "":
		default:
			return p, fmt.Errorf("query parameter wait must be true or false (got %q)", v[0])
		}
	}
	if v, ok := q["timeout"]; ok {
		f, err := strconv.ParseFloat(v[0], 64)
		if errors.Is(err, strconv.ErrRange) && f > 0 {
			err = nil // larger than any wait: clamped below
		}
		if err != nil || math.IsNaN(f) || f < 0 {
			return p, fmt.Errorf("query parameter timeout must be a non-negative number of seconds (got %q)", v[0])
		}
		if f > api.MaxWaitSeconds {
			f = api.MaxWaitSeconds
		}
		p.timeout = time.Duration(f * float64(time.Second))
	}
	return p, nil
}

// autoLengthMax is the largest answer net/http gives a Content-Length of
// its own (its chunking buffer, 2 KB): a document that fits goes without
// one in the header map, which spares each GET a header to copy, sort and
// write (BENCHMARKS.md, issue 15); a larger one carries it, so it is never
// sent chunked. TestGuestDocContentLength checks both on the wire.
const autoLengthMax = 2048

func writeDoc(w http.ResponseWriter, sn *snapshot) {
	h := w.Header()
	h["Content-Type"] = ctJSON
	h["Etag"] = sn.etag
	if sn.length != nil {
		h["Content-Length"] = sn.length
	}
	h["Cache-Control"] = cacheNoStor
	w.WriteHeader(http.StatusOK)
	w.Write(sn.doc)
}

func writeNotModified(w http.ResponseWriter, sn *snapshot) {
	if sn.etag != nil {
		w.Header()["Etag"] = sn.etag
	}
	w.WriteHeader(http.StatusNotModified)
}

// guestConfig serves GET /metadata/v1/config, with or without wait.
func (s *Server) guestConfig(w http.ResponseWriter, r *http.Request, inst *instance) {
	var p waitParams
	if r.URL.RawQuery != "" {
		var err error
		if p, err = parseWait(r.URL.Query()); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	var cond pollCond
	if v := r.Header[api.HeaderIfNoneMatch]; len(v) > 0 {
		inm, err := api.ParseIfNoneMatch(v[0])
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		cond = pollCond{inm: inm, hasINM: true}
	}
	fresh := cond.fresh
	sn := inst.cur.Load()
	if have := cond.inm.ETag; have.Epoch != "" && have.Epoch == sn.epoch && have.Generation > sn.generation {
		s.noteAhead(r.Context(), inst, have.Generation, sn.generation)
	}
	if !p.wait {
		switch {
		case sn.deleted:
			writeError(w, http.StatusNotFound, "unknown instance")
		case sn.doc == nil:
			writeError(w, http.StatusNotFound, "no config published")
		case fresh(sn):
			writeDoc(w, sn)
		default:
			writeNotModified(w, sn)
		}
		return
	}
	if fresh(sn) {
		writeDoc(w, sn)
		return
	}
	if s.parkHijacked(w, r, inst, cond, p.timeout) {
		return
	}
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	s.m.parkedGuest.Inc()
	defer s.m.parkedGuest.Dec()
	for {
		if sn.deleted {
			writeError(w, http.StatusNotFound, "unknown instance")
			return
		}
		if fresh(sn) {
			writeDoc(w, sn)
			return
		}
		select {
		case <-sn.changed:
			sn = inst.cur.Load()
		case <-timer.C:
			writeNotModified(w, sn)
			return
		case <-s.shutdown:
			w.Header().Set("Connection", "close")
			writeNotModified(w, sn)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// guestStatus serves POST /metadata/v1/status.
func (s *Server) guestStatus(w http.ResponseWriter, r *http.Request, inst *instance) {
	if r.ContentLength > status.MaxReportBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "status report exceeds %d bytes", status.MaxReportBytes)
		return
	}
	buf, err := readReport(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "status report exceeds %d bytes", status.MaxReportBytes)
			return
		}
		writeError(w, http.StatusBadRequest, "read status report: %v", err)
		return
	}
	rep, e := decodeReport(*buf)
	putReportBuf(buf)
	if e != nil {
		writeJSON(w, e.Status, e.Body)
		return
	}
	if err := s.appendStatus(r.Context(), inst, rep); err != nil {
		var se *Error
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			writeError(w, http.StatusNotFound, "unknown instance")
			return
		}
		s.log.Error("store status report", "instance", inst.id, "err", err)
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// reportBufs are the buffers status reports are read into: a report of
// the agent's is a few hundred bytes, read whole at its Content-Length
// rather than grown by io.ReadAll.
var reportBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledReport is the largest buffer given back to reportBufs, so that
// a few large reports do not keep 64 KiB buffers alive.
const maxPooledReport = 8 << 10

// readReport reads r's body, at most status.MaxReportBytes (past it the
// error is an *http.MaxBytesError), into a buffer of reportBufs: give it
// back with putReportBuf once nothing refers to it.
func readReport(w http.ResponseWriter, r *http.Request) (*[]byte, error) {
	buf := reportBufs.Get().(*[]byte)
	if n := r.ContentLength; n >= 0 && n <= status.MaxReportBytes {
		// net/http's body stops at Content-Length: read exactly that.
		if int64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		*buf = (*buf)[:n]
		if _, err := io.ReadFull(r.Body, *buf); err != nil {
			putReportBuf(buf)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf, nil
	}
	b := bytes.NewBuffer((*buf)[:0])
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, status.MaxReportBytes))
	*buf = b.Bytes()
	if err != nil {
		putReportBuf(buf)
		return nil, err
	}
	return buf, nil
}

func putReportBuf(buf *[]byte) {
	if cap(*buf) <= maxPooledReport {
		*buf = (*buf)[:0]
		reportBufs.Put(buf)
	}
}

// decodeReport parses and validates one status report: the plain form
// the agent writes by status.DecodeFast, anything else by encoding/json
// (which words the errors).
func decodeReport(body []byte) (*status.Report, *Error) {
	rep := new(status.Report)
	if !status.DecodeFast(body, rep) {
		*rep = status.Report{}
		if e := decodeReportJSON(body, rep); e != nil {
			return nil, e
		}
	}
	if err := rep.Validate(); err != nil {
		var ve *status.ValidationError
		if !errors.As(err, &ve) {
			return nil, errorf(http.StatusBadRequest, "invalid status report: %v", err)
		}
		return nil, &Error{Status: http.StatusBadRequest, Body: api.Error{Error: "invalid status report", Fields: ve.Fields}}
	}
	return rep, nil
}

// decodeReportJSON decodes body into rep with encoding/json.
func decodeReportJSON(body []byte, rep *status.Report) *Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(rep); err != nil {
		return errorf(http.StatusBadRequest, "malformed status report: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed status report: data after the JSON object")
	}
	return nil
}
