package server

import "strings"

// bearerToken returns the credentials of an Authorization header value of
// the Bearer scheme. The scheme's name is case-insensitive (RFC 7235
// section 2.1: "bearer", "BEARER"), and one or more spaces may follow it;
// the token is returned as sent, to be compared exactly.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(tok, " "), true
}
