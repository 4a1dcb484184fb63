package server

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// maxRegistrationBytes bounds a registration body (thousands of addresses
// fit).
const maxRegistrationBytes = 4 << 20

// serveAdmin routes the admin API.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch p {
	case api.PathHealthz:
		if !methodOK(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		if err := s.writeHealth(r.Context()); err != nil {
			// This host's own store cannot write: unhealthy.
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": "store cannot write: " + err.Error()})
			return
		}
		if err := s.StoreHealth(); err != nil {
			// Still alive and serving guests: 200, but say so.
			writeJSON(w, http.StatusOK, map[string]string{"status": "degraded", "error": "store unavailable: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case api.PathMetrics:
		if !methodOK(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.m.handler.ServeHTTP(w, r)
		return
	case api.PathInstances:
		if !methodOK(w, r, http.MethodGet) {
			return
		}
		writeJSON(w, http.StatusOK, api.InstanceList{Instances: s.Instances()})
		return
	}
	rest, ok := strings.CutPrefix(p, api.PathInstances+"/")
	if !ok || rest == "" {
		writeError(w, http.StatusNotFound, "no such path: %s", p)
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	switch sub {
	case "":
		if !methodOK(w, r, http.MethodGet, http.MethodPut, http.MethodDelete) {
			return
		}
	case "config":
		if !methodOK(w, r, http.MethodGet, http.MethodPut) {
			return
		}
	case "status":
		if !methodOK(w, r, http.MethodGet) {
			return
		}
	default:
		writeError(w, http.StatusNotFound, "no such path: %s", p)
		return
	}
	if !ValidID(id) {
		writeError(w, http.StatusBadRequest, "invalid instance id %q: must match %s", id, api.InstanceIDPattern)
		return
	}
	switch sub + " " + r.Method {
	case " GET":
		inst, ok := s.Instance(id)
		if !ok {
			writeError(w, http.StatusNotFound, "instance %q is not registered", id)
			return
		}
		writeJSON(w, http.StatusOK, inst)
	case " PUT":
		s.adminRegister(w, r, id)
	case " DELETE":
		if err := s.Delete(r.Context(), id); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "config PUT":
		s.adminPublish(w, r, id)
	case "config GET":
		s.adminGetConfig(w, id)
	case "status GET":
		s.adminStatus(w, r, id)
	}
}

// methodOK answers 405 unless r's method is one of allowed.
func methodOK(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	if slices.Contains(allowed, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", "))
	return false
}

// readBody reads at most limit bytes, answering 413 or 400 itself.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) ([]byte, bool) {
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "%s exceeds %d bytes", what, limit)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "%s exceeds %d bytes", what, limit)
		} else {
			writeError(w, http.StatusBadRequest, "read %s: %v", what, err)
		}
		return nil, false
	}
	return b, true
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func (s *Server) adminRegister(w http.ResponseWriter, r *http.Request, id string) {
	body, ok := readBody(w, r, maxRegistrationBytes, "registration")
	if !ok {
		return
	}
	var reg api.Registration
	if err := decodeStrict(body, &reg); err != nil {
		writeError(w, http.StatusBadRequest, "invalid registration: %v", err)
		return
	}
	inst, created, err := s.Register(r.Context(), id, reg)
	if err != nil {
		writeErr(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, inst)
}

func (s *Server) adminPublish(w http.ResponseWriter, r *http.Request, id string) {
	var ifMatch *int64
	if v := r.Header[api.HeaderIfMatch]; len(v) > 0 {
		g, err := api.ParseIfMatch(v[0])
		if err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		ifMatch = &g
	}
	body, ok := readBody(w, r, config.MaxDocumentBytes, "config document")
	if !ok {
		s.m.rejects.WithLabelValues("api").Inc()
		return
	}
	gen, err := s.Publish(r.Context(), id, body, ifMatch)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set(api.HeaderETag, api.ETag{Generation: gen}.String())
	writeJSON(w, http.StatusOK, api.PublishResult{Generation: gen})
}

// Config returns instance id's current document with plaintext passwords
// redacted, or nil when nothing is published.
func (s *Server) Config(id string) (*config.Document, error) {
	inst := s.get(id)
	if inst == nil {
		return nil, errorf(http.StatusNotFound, "instance %q is not registered", id)
	}
	sn := inst.cur.Load()
	if sn.doc == nil {
		return nil, nil
	}
	var d config.Document
	if err := json.Unmarshal(sn.doc, &d); err != nil {
		return nil, fmt.Errorf("decode stored config of %q: %w", id, err)
	}
	return d.Redact(), nil
}

func (s *Server) adminGetConfig(w http.ResponseWriter, id string) {
	d, err := s.Config(id)
	if err != nil {
		writeErr(w, err)
		return
	}
	if d == nil {
		writeError(w, http.StatusNotFound, "no config published for instance %q", id)
		return
	}
	w.Header().Set(api.HeaderETag, api.ETag{Generation: d.Generation}.String())
	writeJSON(w, http.StatusOK, d)
}

// adminStatus serves GET /v1/instances/{id}/status with after, limit, wait
// and timeout. An answer holds at most limit reports (and the history at
// most store.MaxStatusHistoryBytes), with more and next when there are
// others past them.
func (s *Server) adminStatus(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	p, err := parseWait(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var after uint64
	if v, ok := q["after"]; ok {
		if after, err = strconv.ParseUint(v[0], 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "query parameter after must be a non-negative integer (got %q)", v[0])
			return
		}
	}
	limit := api.DefaultStatusPage
	if v, ok := q["limit"]; ok {
		if limit, err = strconv.Atoi(v[0]); err != nil || limit < 1 || limit > api.MaxStatusPage {
			writeError(w, http.StatusBadRequest, "query parameter limit must be an integer between 1 and %d (got %q)", api.MaxStatusPage, v[0])
			return
		}
	}
	inst := s.get(id)
	if inst == nil {
		writeError(w, http.StatusNotFound, "instance %q is not registered", id)
		return
	}
	var timer *time.Timer
	for parked := false; ; {
		inst.statusMu.Lock()
		wake := inst.statusWake
		inst.statusMu.Unlock()
		if s.get(id) != inst {
			writeError(w, http.StatusNotFound, "instance %q is not registered", id)
			return
		}
		hist, err := s.st.StatusHistory(r.Context(), id)
		if err != nil {
			writeErr(w, storeError(id, err))
			return
		}
		reports := make([]status.Report, 0, len(hist))
		for _, rep := range hist {
			if rep.Seq > after {
				reports = append(reports, rep)
			}
		}
		if len(reports) > 0 || !p.wait {
			page := api.StatusHistory{InstanceID: id, Reports: reports}
			if len(reports) > limit {
				page.Reports, page.More, page.Next = reports[:limit], true, reports[limit-1].Seq
			}
			writeJSON(w, http.StatusOK, page)
			return
		}
		if !parked {
			parked = true
			timer = time.NewTimer(p.timeout)
			defer timer.Stop()
			g := s.m.parked.WithLabelValues("admin")
			g.Inc()
			defer g.Dec()
		}
		select {
		case <-wake:
		case <-timer.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-s.shutdown:
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// RequireBearer wraps h so that every request but /healthz must carry
// `Authorization: Bearer <token>` (the scheme's name in any case, RFC
// 7235); the token is compared in constant time.
func RequireBearer(token string, h http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathHealthz {
			got, ok := bearerToken(r.Header.Get(api.HeaderAuthorization))
			if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="prewarm-imds"`)
				writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
