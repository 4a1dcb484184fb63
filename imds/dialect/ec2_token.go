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
	m := hmac.New(sha256.New, s.settings.TokenKey)
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

// tokenExpiry checks tok's MAC for instanceID and returns its expiry.
func (s *Set) tokenExpiry(tok, instanceID string) (int64, bool) {
	if len(tok) != base64.StdEncoding.EncodedLen(tokenLen) {
		return 0, false
	}
	var b [tokenLen]byte
	if n, err := base64.StdEncoding.Decode(b[:], []byte(tok)); err != nil || n != tokenLen || b[0] != tokenVersion {
		return 0, false
	}
	if !hmac.Equal(b[9:], s.tokenMAC(b[1:9], instanceID)) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), true
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
	exp, ok := s.tokenExpiry(tok, v.ID)
	if !ok {
		return false
	}
	v.token.Store(&verifiedToken{owner: s, tok: tok, exp: exp})
	return exp > now
}
