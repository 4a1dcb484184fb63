package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// fakeConfig answers GET /metadata/v1/config in front of a testIMDS (whose
// real backend still takes the reports) with the document and ETag a test
// sets, long-polling on If-None-Match as the IMDS does, and records every
// If-None-Match it was sent.
type fakeConfig struct {
	m *testIMDS

	mu      sync.Mutex
	tag     string
	doc     string
	changed chan struct{}
	inm     []string
	// legacy answers 400 to an If-None-Match that is not `"N"`, as an IMDS
	// older than store epochs does.
	legacy bool
}

func newFakeConfig(m *testIMDS) *fakeConfig {
	f := &fakeConfig{m: m, changed: make(chan struct{})}
	m.setFault(f.serve)
	return f
}

// set publishes doc under the ETag tag.
func (f *fakeConfig) set(tag, doc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tag, f.doc = tag, doc
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConfig) setLegacy(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.legacy = v
}

func (f *fakeConfig) ifNoneMatches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.inm)
}

func (f *fakeConfig) serve(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != api.PathConfig {
		return false
	}
	inm := r.Header.Get(api.HeaderIfNoneMatch)
	f.mu.Lock()
	f.inm = append(f.inm, inm)
	legacy := f.legacy
	f.mu.Unlock()
	f.m.poke() // the request is recorded now, not only when it is answered

	if _, err := strconv.Atoi(strings.Trim(inm, `"`)); legacy && inm != "" && err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error": "header If-None-Match must be a generation in quotes, like \"4\" (got %q)"}`, inm)
		return true
	}
	timeout, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
	deadline := time.NewTimer(time.Duration(timeout) * time.Second)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		tag, doc, ch := f.tag, f.doc, f.changed
		f.mu.Unlock()
		switch {
		case doc != "" && inm != tag:
			w.Header().Set(api.HeaderETag, tag)
			w.Write([]byte(doc))
			return true
		case r.URL.Query().Get("wait") != "true":
			if doc == "" {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"error": %q}`, msgNoConfig)
			} else {
				w.WriteHeader(http.StatusNotModified)
			}
			return true
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			return true
		case <-deadline.C:
			w.WriteHeader(http.StatusNotModified)
			return true
		}
	}
}

// poke wakes waitFor, for events recorded outside the testIMDS.
func (m *testIMDS) poke() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notify()
}

// waitIfNoneMatch waits until the agent asked for a change of tag, in a
// request after the first from (an index into ifNoneMatches).
func (f *fakeConfig) waitIfNoneMatch(from int, tag string) {
	f.m.t.Helper()
	f.m.waitFor("If-None-Match "+tag, func([]status.Report, []request) bool {
		return slices.Contains(f.ifNoneMatches()[from:], tag)
	})
}

// stateFile reads the raw state file, so tests see its exact members.
func stateFile(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	epochA = "9f86d081884c7d65"
	epochB = "2c26b46b68ffc68f"
)

func genDoc(gen int64, body string) string {
	return fmt.Sprintf(`{"generation": %d, %s`, gen, strings.TrimPrefix(body, "{"))
}

// TestStoreReplaced: the IMDS's store is replaced (its epoch changes) and
// its generations restart at 1, the generation the agent applied last. The
// agent must take the new store's document as new, apply and report it,
// send every ETag back verbatim, and keep the new one across a restart.
func TestStoreReplaced(t *testing.T) {
	h := newHarness(t)
	f := newFakeConfig(h.imds)
	tagA1 := `"1.` + epochA + `"`
	f.set(tagA1, genDoc(1, partialDoc))
	h.start()
	h.imds.waitReport(status.StatePartialReady, 1)
	f.waitIfNoneMatch(0, tagA1)

	tagB1 := `"1.` + epochB + `"`
	f.set(tagB1, genDoc(1, finalDoc))
	h.imds.waitReport(status.StateProvisioned, 1)
	f.waitIfNoneMatch(0, tagB1)
	if st := stateFile(t, h.stateDir); st["appliedEtag"] != tagB1 || st["attemptedEtag"] != tagB1 {
		t.Errorf("state after the new store's document: appliedEtag %v, attemptedEtag %v; want %s", st["appliedEtag"], st["attemptedEtag"], tagB1)
	}

	// A restart asks for a change of the new store's document (same epoch,
	// same generation: already applied), so nothing is applied again
	// before the next generation.
	h.stop()
	n := len(f.ifNoneMatches())
	h.start()
	h.imds.waitReport(status.StateStarting, 1)
	f.waitIfNoneMatch(n, tagB1)
	if got := f.ifNoneMatches()[n]; got != tagB1 {
		t.Errorf("first If-None-Match after the restart = %q, want %q", got, tagB1)
	}
	f.set(`"2.`+epochB+`"`, genDoc(2, reconfDoc))
	h.imds.waitReport(status.StateProvisioned, 2)
	h.stop()

	got := h.imds.all()
	checkSeq(t, got)
	want := "starting/0 waiting/0 applying/1 partial-ready/1 applying/1 provisioned/1 starting/1 applying/2 provisioned/2"
	if s := states(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	for _, v := range f.ifNoneMatches() {
		if v != "" && v != tagA1 && v != tagB1 && v != `"2.`+epochB+`"` {
			t.Errorf("If-None-Match %q is no ETag the IMDS sent", v)
		}
	}
}

// TestLegacyETags: an IMDS older than epochs (`"N"`), a state file from
// before ETags were kept, an upgrade of the IMDS to epochs (same store: no
// generation applied twice) and a downgrade back (the old IMDS refuses an
// If-None-Match with an epoch: the agent falls back to the generation).
func TestLegacyETags(t *testing.T) {
	h := newHarness(t)
	// A state file as an agent before ETags wrote it.
	if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := `{"version": 1, "appliedGeneration": 3, "appliedState": "provisioned", "attemptedGeneration": 3, "seq": 5, "queue": []}`
	if err := os.WriteFile(filepath.Join(h.stateDir, StateFile), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeConfig(h.imds)
	f.set(`"3"`, genDoc(3, finalDoc))
	h.start()
	f.waitIfNoneMatch(0, `"3"`)
	if got := f.ifNoneMatches()[0]; got != `"3"` {
		t.Errorf("first If-None-Match = %q, want \"3\" (the old state's generation)", got)
	}
	f.set(`"4"`, genDoc(4, partialDoc))
	h.imds.waitReport(status.StatePartialReady, 4)
	f.waitIfNoneMatch(0, `"4"`)

	// The IMDS is upgraded: the same store now names its epoch. Generation
	// 4 is the one applied: learn the epoch, apply nothing.
	tag4 := `"4.` + epochA + `"`
	f.set(tag4, genDoc(4, partialDoc))
	f.waitIfNoneMatch(0, tag4)
	if st := stateFile(t, h.stateDir); st["appliedEtag"] != tag4 {
		t.Errorf("appliedEtag = %v after the upgrade, want %s", st["appliedEtag"], tag4)
	}

	// Downgraded again while the agent was stopped: the old IMDS refuses
	// the epoch once, then the agent waits on the generation alone.
	h.stop()
	f.setLegacy(true)
	f.set(`"4"`, genDoc(4, partialDoc))
	n := len(f.ifNoneMatches())
	h.start()
	h.imds.waitReport(status.StateStarting, 4)
	f.waitIfNoneMatch(n, `"4"`)
	if got := f.ifNoneMatches()[n:]; len(got) < 2 || got[0] != tag4 || got[1] != `"4"` {
		t.Errorf("If-None-Match after the downgrade = %q, want %s then \"4\"", got, tag4)
	}
	f.set(`"5"`, genDoc(5, finalDoc))
	h.imds.waitReport(status.StateProvisioned, 5)
	h.stop()

	got := h.imds.all()
	want := "starting/3 applying/4 partial-ready/4 starting/4 applying/5 provisioned/5"
	if s := states(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
	if len(got) > 0 && got[0].Seq != 6 {
		t.Errorf("first seq %d, want 6 (the old state's seq carried on)", got[0].Seq)
	}
	bad := 0
	for _, r := range configGets(h.imds.reqs()) {
		if r.Code == http.StatusBadRequest {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("%d config requests refused with 400, want 1 (the fallback must stick)", bad)
	}
}

// TestOlderGenerationSameStoreIgnored: a document of the same store (same
// epoch) with a lower generation than the one applied is an IMDS restored
// from an older backup that answered anyway: the agent never goes back to
// it, keeps waiting on what it applied, and applies the next generation
// numbered past it.
func TestOlderGenerationSameStoreIgnored(t *testing.T) {
	h := newHarness(t)
	f := newFakeConfig(h.imds)
	tag3 := `"3.` + epochA + `"`
	f.set(tag3, genDoc(3, finalDoc))
	h.start()
	h.imds.waitReport(status.StateProvisioned, 3)
	f.waitIfNoneMatch(0, tag3)

	f.set(`"1.`+epochA+`"`, genDoc(1, partialDoc))
	n := len(f.ifNoneMatches())
	f.waitIfNoneMatch(n, tag3) // polled again after seeing generation 1
	if st := stateFile(t, h.stateDir); st["appliedEtag"] != tag3 || st["attemptedEtag"] != tag3 {
		t.Errorf("state after an older generation of the same store: appliedEtag %v, attemptedEtag %v; want %s", st["appliedEtag"], st["attemptedEtag"], tag3)
	}
	f.set(`"4.`+epochA+`"`, genDoc(4, reconfDoc))
	h.imds.waitReport(status.StateProvisioned, 4)
	h.stop()

	got := h.imds.all()
	checkSeq(t, got)
	want := "starting/0 waiting/0 applying/3 provisioned/3 applying/4 provisioned/4"
	if s := states(got); s != want {
		t.Errorf("reports = %s\nwant      %s", s, want)
	}
}
