package server

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/shared/status"
)

// maxRegistrationBytes bounds a registration body (thousands of addresses
// fit).
const maxRegistrationBytes = 4 << 20

// adminRouter routes the admin API (PROTOCOL.md section 3) by method and
// path. Every answer it makes itself is an error object: 405 with Allow
// for a method a path does not take, 404 for a path that names nothing,
// 400 for an {id} that breaks the id pattern.
func (s *Server) adminRouter() http.Handler {
	mux := http.NewServeMux()
	handleAdmin(mux, api.PathHealthz, adminRoute{http.MethodGet, s.adminHealth}, adminRoute{http.MethodHead, s.adminHealth})
	handleAdmin(mux, api.PathMetrics, adminRoute{http.MethodGet, s.m.handler.ServeHTTP}, adminRoute{http.MethodHead, s.m.handler.ServeHTTP})
	handleAdmin(mux, api.PathInstances, adminRoute{http.MethodGet, s.adminList})
	// A trailing slash names the instance too, as it always has.
	for _, p := range []string{api.PathInstance1, api.PathInstance1 + "/{$}"} {
		handleAdmin(mux, p,
			adminRoute{http.MethodGet, withID(s.adminGetInstance)},
			adminRoute{http.MethodPut, withID(s.adminRegister)},
			adminRoute{http.MethodDelete, withID(s.adminDelete)})
	}
	handleAdmin(mux, api.PathInstanceConfig,
		adminRoute{http.MethodGet, withID(s.adminGetConfig)},
		adminRoute{http.MethodPut, withID(s.adminPublish)})
	handleAdmin(mux, api.PathInstanceStatus, adminRoute{http.MethodGet, withID(s.adminStatus)})
	// The fleet page (ui.go) has a mux of its own, built at its first
	// request: a server whose UI nobody opens never registers its routes
	// (issue 15's idle RSS: each registration runs pattern parsing and a
	// runtime.Caller). Its "/" answers what the admin API's "/" would.
	ui := sync.OnceValue(func() http.Handler {
		m := http.NewServeMux()
		s.uiRoutes(m)
		m.HandleFunc("/", noSuchPath)
		return m
	})
	uiLazy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ui().ServeHTTP(w, r) })
	mux.Handle("/ui", uiLazy)
	mux.Handle("/ui/", uiLazy)
	mux.HandleFunc("/", noSuchPath)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would redirect it; the admin API redirects nowhere.
		if !cleanPath(r.URL.Path) {
			noSuchPath(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath reports whether ServeMux takes p as it is. It redirects the
// others (/v1//instances, /v1/instances/a/../b), which name nothing here.
func cleanPath(p string) bool {
	c := path.Clean(p)
	return strings.HasPrefix(p, "/") && (p == c || c != "/" && p == c+"/")
}

// adminRoute is one method of an admin API path.
type adminRoute struct {
	method string
	h      http.HandlerFunc
}

// handleAdmin registers the routes of one path pattern, and for every other method
// a 405 naming them in Allow (HEAD included: a GET pattern alone would take
// it).
func handleAdmin(mux *http.ServeMux, pattern string, routes ...adminRoute) {
	allowed := make([]string, len(routes))
	for i, rt := range routes {
		mux.HandleFunc(rt.method+" "+pattern, rt.h)
		allowed[i] = rt.method
	}
	allow := strings.Join(allowed, ", ")
	notAllowed := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
	}
	if !slices.Contains(allowed, http.MethodHead) {
		mux.HandleFunc(http.MethodHead+" "+pattern, notAllowed)
	}
	mux.HandleFunc(pattern, notAllowed)
}

// withID hands h the path's {id}, once it matches the id pattern (400
// otherwise).
func withID(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !ValidID(id) {
			writeError(w, http.StatusBadRequest, "invalid instance id %q: must match %s", id, api.InstanceIDPattern)
			return
		}
		h(w, r, id)
	}
}

func noSuchPath(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "no such path: %s", r.URL.Path)
}

// adminHealth serves GET /healthz.
func (s *Server) adminHealth(w http.ResponseWriter, r *http.Request) {
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
}

func (s *Server) adminGetInstance(w http.ResponseWriter, _ *http.Request, id string) {
	inst, ok := s.Instance(id)
	if !ok {
		writeError(w, http.StatusNotFound, "instance %q is not registered", id)
		return
	}
	writeJSON(w, http.StatusOK, inst)
}

func (s *Server) adminDelete(w http.ResponseWriter, r *http.Request, id string) {
	if err := s.Delete(r.Context(), id); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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

func (s *Server) adminGetConfig(w http.ResponseWriter, _ *http.Request, id string) {
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
	park := &adminPark{s: s, timeout: p.timeout}
	defer park.done()
	for {
		wake := inst.statusWake.next()
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
		if !park.wait(w, r, wake, "") {
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
		if isUIPath(r.URL.Path) {
			serveUIAuth(want, h, w, r) // the fleet page's login (uiauth.go)
			return
		}
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
