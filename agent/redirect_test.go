package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// TestNoRedirectOffIMDS: the IMDS (or whatever answers at its address)
// redirects the config fetch and the status reports to another host. The
// agent must never go there: no document from it is applied, no report is
// sent to it, and the failures are logged as refused redirects.
func TestNoRedirectOffIMDS(t *testing.T) {
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var elsewhere atomic.Int32
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				elsewhere.Add(1)
				if r.Method == http.MethodPost {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				w.Header().Set(api.HeaderETag, `"9"`)
				w.Write([]byte(`{"generation": 9, "hostname": "evil"}`))
			}))
			defer other.Close()

			h := newHarness(t)
			h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				http.Redirect(w, r, other.URL+r.URL.RequestURI(), code)
				return true
			})
			h.start()
			// Each redirect answered here was refused or followed before
			// the agent asked again: three of each are plenty.
			h.imds.waitFor("redirects refused", func(_ []status.Report, reqs []request) bool {
				gets, posts := 0, 0
				for _, r := range reqs {
					if r.Code == code && r.Path == api.PathConfig {
						gets++
					}
					if r.Code == code && r.Path == api.PathStatus {
						posts++
					}
				}
				return gets >= 3 && posts >= 3
			})
			h.stop()
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the agent followed a redirect off the IMDS: %d requests reached the other host", n)
			}
			if calls := h.plat.callList(); len(calls) != 0 {
				t.Errorf("applied a redirected document: %v", calls)
			}
			if !strings.Contains(h.logs.String(), "redirect away from the IMDS refused") {
				t.Errorf("the refusal is not in the log")
			}
		})
	}
}

// TestRedirectWithinIMDS: a redirect to another path of the IMDS itself
// (same scheme, host and port) is followed, for the config and the reports.
func TestRedirectWithinIMDS(t *testing.T) {
	const moved = "/moved"
	h := newHarness(t)
	h.imds.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if p, ok := strings.CutPrefix(r.URL.Path, moved); ok {
			r.URL.Path = p
			return false // the IMDS answers
		}
		u := *r.URL
		u.Path = moved + u.Path
		http.Redirect(w, r, h.imds.URL+u.RequestURI(), http.StatusTemporaryRedirect)
		return true
	})
	g := h.imds.publish(finalDoc)
	h.start()
	h.imds.waitReport(status.StateProvisioned, g)
	h.stop()
	if s := states(h.imds.all()); s != "starting/0 waiting/0 applying/1 provisioned/1" {
		t.Errorf("reports = %s", s)
	}
}
