package server

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

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
	var timer *time.Timer
	for parked := false; ; {
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
			w.Header().Set(api.HeaderETag, tag)
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
