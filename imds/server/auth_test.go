package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/api"
)

// The Bearer scheme's name is case-insensitive (RFC 7235 section 2.1);
// the token itself is compared exactly.
func TestRequireBearerScheme(t *testing.T) {
	s := newTestServer(t, Options{})
	h := RequireBearer("tok-123", s.AdminHandler())
	tests := []struct {
		auth string
		code int
	}{
		{"Bearer tok-123", 200},
		{"bearer tok-123", 200},
		{"BEARER tok-123", 200},
		{"bEaReR tok-123", 200},
		{"Bearer   tok-123", 200}, // 1*SP
		{"bearer tok-124", 401},
		{"BEARER TOK-123", 401},
		{"Bearer tok-123x", 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"Bearertok-123", 401},
		{"Basic tok-123", 401},
		{"tok-123", 401},
	}
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			rec := do(h, req{path: "/v1/instances", hdr: map[string]string{"Authorization": tt.auth}})
			if rec.Code != tt.code {
				t.Fatalf("Authorization %q: status %d, want %d", tt.auth, rec.Code, tt.code)
			}
			if tt.code == 401 {
				errBody(t, rec)
				if got := rec.Header().Get("WWW-Authenticate"); got == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			}
		})
	}
}

// FuzzRequireBearer sends arbitrary Authorization values: no panic, and
// a request passes exactly when the value is the Bearer scheme's name in
// any case, one or more spaces, and the token itself.
func FuzzRequireBearer(f *testing.F) {
	for _, h := range []string{"Bearer tok-123", "bearer tok-123", "BEARER tok-123", "Bearer   tok-123",
		"Bearer tok-1234", "Bearer\ttok-123", "Bearertok-123", "Bearer", "Bearer ", "Basic tok-123", "",
		"Bearer tok-123 ", "Bearer  tok-123\x00", "ʙearer tok-123", "Bearer tok-123,foo"} {
		f.Add(h)
	}
	s := newTestServer(f, Options{})
	h := RequireBearer("tok-123", s.AdminHandler())
	f.Fuzz(func(t *testing.T, auth string) {
		r := httptest.NewRequest(http.MethodGet, api.PathInstances, nil)
		r.Header[api.HeaderAuthorization] = []string{auth}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		want := len(auth) > 7 && strings.EqualFold(auth[:6], "bearer") && auth[6] == ' ' && strings.TrimLeft(auth[6:], " ") == "tok-123"
		if got := rec.Code == http.StatusOK; got != want {
			t.Fatalf("Authorization %q: status %d, want passed=%v", auth, rec.Code, want)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusUnauthorized {
			t.Fatalf("Authorization %q: status %d", auth, rec.Code)
		}
	})
}
