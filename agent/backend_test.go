package agent

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// newGuestBackend returns a minimal guest API (long-poll, ETag, status)
// and its publish function.
func newGuestBackend(t *testing.T) (http.Handler, func(string) int64) {
	var mu sync.Mutex
	var gen int64
	var doc []byte
	changed := make(chan struct{})
	publish := func(d string) int64 {
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("publish: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		gen++
		m["generation"] = gen
		m["instanceId"] = "vm-1"
		doc, _ = json.Marshal(m)
		close(changed)
		changed = make(chan struct{})
		return gen
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(api.HeaderMetadata) != "true" {
			http.Error(w, `{"error":"Metadata: true required"}`, 400)
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathStatus:
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet && r.URL.Path == api.PathConfig:
			inm := r.Header.Get(api.HeaderIfNoneMatch)
			wait := r.URL.Query().Get("wait") == "true"
			to := 60
			if s := r.URL.Query().Get("timeout"); s != "" {
				to, _ = strconv.Atoi(s)
			}
			timer := time.NewTimer(time.Duration(to) * time.Second)
			defer timer.Stop()
			for {
				mu.Lock()
				d, g, ch := doc, gen, changed
				mu.Unlock()
				fresh := d != nil && (inm == "" || inm != `"`+strconv.FormatInt(g, 10)+`"`)
				if fresh || (!wait && d != nil) {
					w.Header().Set("Content-Type", api.ContentTypeJSON)
					w.Header().Set(api.HeaderETag, `"`+strconv.FormatInt(g, 10)+`"`)
					w.Write(d)
					return
				}
				if !wait {
					w.WriteHeader(404)
					w.Write([]byte(`{"error":"no config published"}`))
					return
				}
				select {
				case <-ch:
				case <-timer.C:
					w.WriteHeader(http.StatusNotModified)
					return
				case <-r.Context().Done():
					return
				}
			}
		default:
			w.WriteHeader(405)
		}
	})
	return h, publish
}
