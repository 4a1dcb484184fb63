package server

import "testing"

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
