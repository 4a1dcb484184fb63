package server

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/prewarm/prewarm/imds/internal/promtext"
	"github.com/prewarm/prewarm/shared/api"
)

// adminList serves GET /v1/instances. The answer carries an entity tag of
// its content; a request whose If-None-Match holds the current tag gets
// 304, and with wait=true it is held until the list differs (a
// registration, publish, report or deletion changed it) or its timeout
// passes (then 304): the long-poll prewarm-imds list --watch redraws on.
func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	p, err := parseWait(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	inm := r.Header.Get(api.HeaderIfNoneMatch)
	park := &adminPark{s: s, timeout: p.timeout}
	defer park.done()
	for {
		// The wake channel is taken before the list is read, so a change
		// made while it is read still wakes this poll.
		wake := s.fleet.changed()
		body, tag := s.listBody()
		if inm != tag {
			h := w.Header()
			h["Content-Type"] = ctJSON
			h["X-Content-Type-Options"] = noSniff
			h["Cache-Control"] = cacheNoStor
			h.Set(api.HeaderETag, tag)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
			return
		}
		if !p.wait {
			w.Header().Set(api.HeaderETag, tag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if !park.wait(w, r, wake, tag) {
			return
		}
	}
}

// adminPark is one admin long-poll's park: its timer and its count in the
// parked gauge start at its first wait and end with done.
type adminPark struct {
	s       *Server
	timeout time.Duration
	timer   *time.Timer
	gauge   *promtext.Gauge
}

// wait blocks until wake fires (true) or the poll is over (false): at its
// timeout it answers 304 (with ETag etag unless that is ""), on shutdown
// 304 with Connection: close, and nothing when the client has gone.
func (p *adminPark) wait(w http.ResponseWriter, r *http.Request, wake <-chan struct{}, etag string) bool {
	if p.timer == nil {
		p.timer = time.NewTimer(p.timeout)
		p.gauge = p.s.m.parked.WithLabelValues("admin")
		p.gauge.Inc()
	}
	select {
	case <-wake:
		return true
	case <-p.timer.C:
		if etag != "" {
			w.Header().Set(api.HeaderETag, etag)
		}
		w.WriteHeader(http.StatusNotModified)
	case <-p.s.shutdown:
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusNotModified)
	case <-r.Context().Done():
	}
	return false
}

// done stops the timer and leaves the gauge, if the poll parked.
func (p *adminPark) done() {
	if p.timer != nil {
		p.timer.Stop()
		p.gauge.Dec()
	}
}

// listBody returns the instance list's JSON and its entity tag: a hash of
// that JSON, so the tag changes exactly when the answer does.
func (s *Server) listBody() ([]byte, string) {
	b, err := marshal(api.InstanceList{Instances: s.Instances()})
	if err != nil {
		b = []byte(`{"instances":[]}` + "\n")
	}
	sum := sha256.Sum256(b)
	return b, `"` + hex.EncodeToString(sum[:12]) + `"`
}
