package dialect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// EC2 tokens are opaque to clients. Prewarm's are self-contained, so no
// state is kept per token: a version byte, the expiry (Unix seconds) and a
// MAC over both and the instance id, under the host's token key. A token
// presented by another instance, altered, or past its expiry fails.
const (
	tokenVersion = 1
	tokenMACLen  = 20
	tokenLen     = 1 + 8 + tokenMACLen
)

func (s *Set) tokenMAC(exp []byte, instanceID string) []byte {
	m := hmac.New(sha256.New, s.tokenKey())
	m.Write([]byte{tokenVersion})
	m.Write(exp)
	m.Write([]byte(instanceID))
	return m.Sum(nil)[:tokenMACLen]
}

// signToken issues a token for instanceID that lives ttl seconds.
func (s *Set) signToken(instanceID string, ttl int) string {
	var b [tokenLen]byte
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(s.now().Unix()+int64(ttl)))
	copy(b[9:], s.tokenMAC(b[1:9], instanceID))
	return base64.StdEncoding.EncodeToString(b[:])
}

// tokenEncoding decodes tokens strictly, so that each token has exactly
// one accepted spelling (no stray bits in the last character).
var tokenEncoding = base64.StdEncoding.Strict()

// tokenB64Len is the length of every token signToken issues.
var tokenB64Len = base64.StdEncoding.EncodedLen(tokenLen)

// tokenExpiry checks tok's MAC for instanceID and returns its expiry, and
// why it refused tok when it does. tok is whatever the client sent: any
// string, of the right length or not, must be refused without a panic.
func (s *Set) tokenExpiry(tok, instanceID string) (int64, string) {
	if len(tok) != tokenB64Len {
		return 0, "malformed (length)"
	}
	// The buffer holds what any tokenB64Len characters can decode to:
	// without padding that is more than tokenLen bytes, and Decode
	// writes all of them before the length can be checked.
	var b [tokenLen + 2]byte
	if n, err := tokenEncoding.Decode(b[:], []byte(tok)); err != nil || n != tokenLen {
		return 0, "malformed (encoding)"
	}
	if b[0] != tokenVersion {
		return 0, "malformed (version)"
	}
	if !hmac.Equal(b[9:tokenLen], s.tokenMAC(b[1:9], instanceID)) {
		return 0, "not issued to this instance"
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), ""
}

// verifiedToken is the last token a view's instance presented that passed
// its MAC check, so that a client reusing its token (as they all do) costs
// a comparison instead of a MAC per request.
type verifiedToken struct {
	owner *Set
	tok   string
	exp   int64
}

// checkToken reports whether tok was issued to v's instance and has not
// expired, remembering the last token that passed in v.
func (s *Set) checkToken(v *View, tok string) bool {
	now := s.now().Unix()
	if m := v.token.Load(); m != nil && m.owner == s && m.tok == tok {
		return m.exp > now
	}
	exp, why := s.tokenExpiry(tok, v.ID)
	if why != "" {
		// A client's mistake, answered 401: debug level only, so that
		// a guest sending garbage cannot fill the host's log.
		s.debugf("EC2 token refused for instance %q: %s", v.ID, why)
		return false
	}
	v.token.Store(&verifiedToken{owner: s, tok: tok, exp: exp})
	return exp > now
}
