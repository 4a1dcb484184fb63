package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

// Admin API paths (on the controller's Unix socket).
const (
	PathClaims  = "/v1/claims"
	PathStatus  = "/v1/status"
	PathVMs     = "/v1/vms"
	PathHealthz = "/healthz"
	PathMetrics = "/metrics"
)

// maxClaimBody is the document cap plus room for the claim's own fields.
const maxClaimBody = config.MaxDocumentBytes + 16<<10

// Handler is the controller's admin API: claims, status, release,
// /healthz and Prometheus /metrics. Errors are the contract's error object
// naming the offending fields.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathClaims, c.handleClaim)
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("DELETE "+PathVMs+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Release(r.Context(), r.PathValue("name")); err != nil {
			writeErr(w, c.log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(c.m.reg, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &codeWriter{ResponseWriter: w}
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// The mux's own 404/405 are plain text: answer with the error object.
			rec := &codeWriter{ResponseWriter: &discard{h: http.Header{}}}
			h.ServeHTTP(rec, r)
			code := rec.code
			if code == 0 {
				code = http.StatusNotFound
			}
			if allow := rec.Header().Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeJSON(sw, code, api.Error{Error: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(code)))})
			c.m.requests.WithLabelValues("unknown", strconv.Itoa(code)).Inc()
			return
		}
		mux.ServeHTTP(sw, r) // sets r's path values (mux.Handler does not)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		c.m.requests.WithLabelValues(pattern, strconv.Itoa(sw.code)).Inc()
	})
}

func (c *Controller) handleClaim(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxClaimBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: "read body: " + err.Error()})
		return
	}
	if len(body) > maxClaimBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, api.Error{Error: fmt.Sprintf("claim exceeds %d bytes", maxClaimBody)})
		return
	}
	var req ClaimRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, decodeErr(err))
		return
	}
	res, err := c.Claim(r.Context(), req)
	if err != nil {
		writeErr(w, c.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeErr names the field a claim body got wrong.
func decodeErr(err error) api.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return api.Error{Error: "invalid claim", Fields: []api.FieldError{{Path: te.Field, Reason: "must be a " + te.Type.String()}}}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return api.Error{Error: "invalid claim", Fields: []api.FieldError{{Path: strings.Trim(f, `"`), Reason: "unknown field"}}}
	}
	return api.Error{Error: "invalid claim: body must be a JSON object: " + err.Error()}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", api.ContentTypeJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeErr(w http.ResponseWriter, log *slog.Logger, err error) {
	var e *Error
	if errors.As(err, &e) {
		writeJSON(w, e.Code, e.Body)
		return
	}
	log.Error("request failed", "err", err)
	writeJSON(w, http.StatusInternalServerError, api.Error{Error: err.Error()})
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// discard is a ResponseWriter that keeps only the headers.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header       { return d.h }
func (*discard) Write(b []byte) (int, error) { return len(b), nil }
func (*discard) WriteHeader(int)             {}
