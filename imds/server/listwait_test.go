package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// TestAdminListLongPoll: GET /v1/instances carries an entity tag of its
// content; If-None-Match with it answers 304, and with wait=true the
// request is held until the list changes (a registration, a publish, a
// report, a deletion) or the timeout passes.
func TestAdminListLongPoll(t *testing.T) {
	s := newTestServer(t, Options{Rate: 0})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	rec := do(s.AdminHandler(), req{path: api.PathInstances})
	tag := rec.Header().Get(api.HeaderETag)
	if rec.Code != 200 || tag == "" {
		t.Fatalf("list: %d, ETag %q", rec.Code, tag)
	}
	if rec := do(s.AdminHandler(), req{path: api.PathInstances}); rec.Header().Get(api.HeaderETag) != tag {
		t.Fatalf("the tag of an unchanged list changed: %q, %q", tag, rec.Header().Get(api.HeaderETag))
	}
	inm := map[string]string{api.HeaderIfNoneMatch: tag}
	if rec := do(s.AdminHandler(), req{path: api.PathInstances, hdr: inm}); rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match of the current tag: %d", rec.Code)
	}
	if rec := do(s.AdminHandler(), req{path: api.PathInstances + "?wait=true&timeout=0.05", hdr: inm}); rec.Code != http.StatusNotModified || rec.Header().Get(api.HeaderETag) != tag {
		t.Fatalf("a wait on an unchanged list: %d, ETag %q", rec.Code, rec.Header().Get(api.HeaderETag))
	}
	if rec := do(s.AdminHandler(), req{path: api.PathInstances + "?wait=maybe"}); rec.Code != http.StatusBadRequest {
		t.Fatalf("wait=maybe: %d", rec.Code)
	}

	for _, change := range []struct {
		name string
		do   func()
	}{
		{"publish", func() { mustPublish(t, s, "vm-1", `{"hostname":"a"}`) }},
		{"report", func() {
			rep := `{"seq":1,"time":"2026-11-21T10:00:00Z","generation":1,"state":"provisioned","error":"","agentVersion":"t","event":""}`
			if rec := do(s.GuestHandler(), req{method: "POST", path: api.PathStatus, from: "10.0.0.1", body: rep, hdr: md}); rec.Code != 204 {
				t.Fatalf("report: %d %s", rec.Code, rec.Body)
			}
		}},
		{"register", func() { mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"10.0.0.2"}}) }},
		{"delete", func() {
			if err := s.Delete(context.Background(), "vm-2"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		ch := make(chan *http.Response, 1)
		go func() {
			rec := do(s.AdminHandler(), req{path: api.PathInstances + "?wait=true&timeout=60", hdr: map[string]string{api.HeaderIfNoneMatch: tag}})
			ch <- rec.Result()
		}()
		for deadline := time.Now().Add(30 * time.Second); gaugeValue(s, "admin") != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the list poll did not park", change.name)
			}
		}
		change.do()
		select {
		case resp := <-ch:
			newTag := resp.Header.Get(api.HeaderETag)
			if resp.StatusCode != 200 || newTag == tag || newTag == "" {
				t.Fatalf("%s: %d, ETag %q (was %q)", change.name, resp.StatusCode, newTag, tag)
			}
			tag = newTag
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not wake the list poll", change.name)
		}
	}
}
