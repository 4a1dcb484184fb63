package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// On a token-guarded listener the fleet page takes the token in a login
// form and keeps a cookie that opens the page's GET paths only.
func TestFleetPageLogin(t *testing.T) {
	const token = "ui-test-token-of-at-least-32-bytes!"
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	postReport(t, s.GuestHandler(), "10.0.0.1", status.Report{Seq: 1, State: status.StateWaiting})
	h := RequireBearer(token, s.AdminHandler())
	form := func(v string) req {
		return req{method: "POST", path: "/ui/login", body: url.Values{"token": {v}}.Encode(),
			hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
	}

	// Without anything: the login form, 401, where a page was asked for.
	for path, action := range map[string]string{"/ui/": `action="./login"`, "/ui/instances/vm-1": `action="../login"`, "/ui/?state=none": `action="./login"`} {
		rec := do(h, req{path: path})
		if b := rec.Body.String(); rec.Code != 401 || !strings.Contains(b, action) || strings.Contains(b, "vm-1\"") || rec.Header().Get("WWW-Authenticate") == "" ||
			rec.Header().Get("Content-Security-Policy") == "" || strings.Contains(b, "http-equiv=\"refresh\"") {
			t.Errorf("%s without a token: %d\n%s", path, rec.Code, b)
		}
	}
	if rec := do(h, req{path: "/ui/events"}); rec.Code != 401 || errBody(t, rec).Error == "" {
		t.Errorf("stream without a token: %d", rec.Code)
	}
	if rec := do(h, req{path: "/ui/static/ui.css"}); rec.Code != 200 {
		t.Errorf("the login page's style: %d", rec.Code)
	}
	if rec := do(h, req{path: "/ui"}); rec.Code != http.StatusMovedPermanently {
		t.Errorf("/ui: %d", rec.Code)
	}
	if rec := do(h, req{path: "/ui/login"}); rec.Code != 200 || !strings.Contains(rec.Body.String(), `name="token"`) {
		t.Errorf("GET /ui/login: %d", rec.Code)
	}

	// A wrong token, an oversized form: no cookie.
	rec := do(h, form("wrong"))
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "not this server&#39;s admin token") || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("wrong token: %d %q\n%s", rec.Code, rec.Header().Get("Set-Cookie"), rec.Body)
	}
	if rec := do(h, form(strings.Repeat("x", maxUILoginBytes))); rec.Code != 400 || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("oversized form: %d", rec.Code)
	}

	// The token: a cookie that proves it without holding it.
	rec = do(h, form(token))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "./" {
		t.Fatalf("login: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Name != uiCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || strings.Contains(c.Value, token) || len(c.Value) != 64 {
		t.Errorf("cookie %+v", c)
	}
	withCookie := map[string]string{"Cookie": uiCookie + "=" + c.Value}
	for _, p := range []string{"/ui/", "/ui/instances/vm-1", "/ui/?state=waiting"} {
		if rec := do(h, req{path: p, hdr: withCookie}); rec.Code != 200 || !strings.Contains(rec.Body.String(), `data-state="waiting"`) {
			t.Errorf("%s with the cookie: %d", p, rec.Code)
		}
	}
	// The cookie opens the fleet page only: not the admin API, not a
	// write, not with another value.
	for _, r := range []req{
		{path: "/v1/instances", hdr: withCookie}, {path: "/metrics", hdr: withCookie},
		{method: "DELETE", path: "/v1/instances/vm-1", hdr: withCookie},
		{path: "/ui/", hdr: map[string]string{"Cookie": uiCookie + "=" + strings.Repeat("0", 64)}},
		{path: "/ui/", hdr: map[string]string{"Cookie": uiCookie + "=" + token}},
	} {
		if rec := do(h, r); rec.Code != 401 {
			t.Errorf("%s %s with %v: %d, want 401", r.method, r.path, r.hdr, rec.Code)
		}
	}
	if _, ok := s.Instance("vm-1"); !ok {
		t.Fatal("vm-1 was deleted through the cookie")
	}
	// The bearer token opens the page as every path.
	if rec := do(h, req{path: "/ui/", hdr: map[string]string{"Authorization": "Bearer " + token}}); rec.Code != 200 {
		t.Errorf("/ui/ with the bearer token: %d", rec.Code)
	}
}
