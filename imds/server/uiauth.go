package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// The fleet page on a token-guarded (TCP) admin listener. A browser sends
// no Authorization header, so the page takes the token once, in a login
// form, and keeps a session cookie that proves it: HMAC-SHA256 of the
// token (the token itself never sits in the browser), HttpOnly,
// SameSite=Strict, Path=/ui/. The cookie opens the fleet page's GET paths
// only, never the admin API; a request with the bearer token passes as
// everywhere. The Unix socket has no token and needs none of this.

const (
	uiCookie        = "prewarm_ui"
	uiLoginPath     = "/ui/login"
	maxUILoginBytes = 4096
)

// uiSession is the session cookie's value for token.
func uiSession(token []byte) string {
	m := hmac.New(sha256.New, token)
	m.Write([]byte("prewarm-imds fleet page session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// isUIPath says whether p is one of the fleet page's paths.
func isUIPath(p string) bool { return p == "/ui" || strings.HasPrefix(p, PathUI) }

// uiRoot is the relative path from p (a fleet page path) to /ui/.
func uiRoot(p string) string {
	if p == "/ui" {
		return "ui/"
	}
	if d := strings.Count(strings.TrimPrefix(p, PathUI), "/"); d > 0 {
		return strings.Repeat("../", d)
	}
	return "./"
}

// serveUIAuth answers a fleet page request on a listener guarded by
// want: with the bearer token or the session cookie it goes on to h; the
// login form's POST checks the token and sets the cookie; the static
// files and /ui's redirect are served to anyone (the login page uses
// them); any other page
// answers 401 with the login form, an event stream 401 with the error
// object.
func serveUIAuth(want []byte, h http.Handler, w http.ResponseWriter, r *http.Request) {
	if got, ok := bearerToken(r.Header.Get("Authorization")); ok && subtle.ConstantTimeCompare([]byte(got), want) == 1 {
		h.ServeHTTP(w, r)
		return
	}
	session := uiSession(want)
	if c, err := r.Cookie(uiCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(session)) == 1 && r.URL.Path != uiLoginPath {
		h.ServeHTTP(w, r)
		return
	}
	switch {
	case r.URL.Path == uiLoginPath && r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxUILoginBytes)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "login form: %v", err)
			return
		}
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(r.PostForm.Get("token"))), want) != 1 {
			uiLogin(w, r, "That is not this server's admin token.")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: uiCookie, Value: session, Path: PathUI, HttpOnly: true, SameSite: http.SameSiteStrictMode,
			Expires: time.Now().Add(30 * 24 * time.Hour)})
		// Relative, as every fleet page link: /ui/login -> /ui/.
		w.Header().Set("Location", "./")
		w.WriteHeader(http.StatusSeeOther)
	case r.URL.Path == uiLoginPath && r.Method == http.MethodGet,
		r.Method == http.MethodGet && (r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/static/")):
		if r.URL.Path == uiLoginPath {
			uiLogin(w, r, "")
			return
		}
		h.ServeHTTP(w, r)
	case r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events"):
		uiLogin(w, r, "")
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="prewarm-imds"`)
		writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
	}
}

// uiLogin answers 401 with the login form (or 200 for GET /ui/login).
func uiLogin(w http.ResponseWriter, r *http.Request, msg string) {
	code := http.StatusUnauthorized
	if r.URL.Path == uiLoginPath && r.Method == http.MethodGet {
		code = http.StatusOK
	}
	b, err := uiRender("login", &uiPage{Title: "sign in", Root: uiRoot(r.URL.Path), LoginError: msg})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "the page could not be rendered")
		return
	}
	uiHeaders(w)
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer realm="prewarm-imds"`)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
}
