package api

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// EpochLen is the length of a store epoch: 16 lowercase hex digits.
const EpochLen = 16

// ETag is the guest API's entity tag of a config document (PROTOCOL.md
// section 2): `"<generation>.<epoch>"`, or the older `"<generation>"`,
// which names no store (Epoch "").
type ETag struct {
	Generation int64
	Epoch      string
}

// String is the tag as the IMDS sends it, quotes included.
func (t ETag) String() string {
	g := strconv.FormatInt(t.Generation, 10)
	if t.Epoch == "" {
		return `"` + g + `"`
	}
	return `"` + g + "." + t.Epoch + `"`
}

// ErrETag is the rule a config's entity tag breaks, whatever part is wrong.
var ErrETag = errors.New(`must be a generation and the store's epoch in quotes, like "4.9f86d081884c7d65", or a generation alone, like "4"`)

// ParseETag reads the ETag of a config answer, strictly: one of the two
// forms exactly as String writes them, with a generation of at least 1,
// optionally weak (W/). An accepted tag is a well-formed header value and
// says what it holds, so the agent can send it back verbatim in
// If-None-Match.
func ParseETag(s string) (ETag, error) {
	t, err := readTag(s)
	if err != nil || t.Generation < 1 || strings.TrimPrefix(strings.TrimSpace(s), "W/") != t.String() {
		return ETag{}, ErrETag
	}
	return t, nil
}

// readTag reads a tag the way the IMDS reads request headers, leniently:
// quotes and a weak W/ prefix are optional, and the generation is any
// non-negative decimal number strconv.ParseInt takes ("04", "+4"); the
// epoch, when present, must be one.
func readTag(v string) (ETag, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	g, e, dotted := strings.Cut(v, ".")
	gen, err := strconv.ParseInt(g, 10, 64)
	if err != nil || gen < 0 || (dotted && !ValidEpoch(e)) {
		return ETag{}, ErrETag
	}
	return ETag{Generation: gen, Epoch: e}, nil
}

// ValidEpoch reports whether e has the form of a store epoch.
func ValidEpoch(e string) bool {
	if len(e) != EpochLen {
		return false
	}
	for _, c := range []byte(e) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IfNoneMatch is a guest's If-None-Match on the config: the tag of the
// document it has, or Any ("*").
type IfNoneMatch struct {
	ETag
	Any bool
}

// ParseIfNoneMatch reads an If-None-Match header value: "*", or a tag in
// either form (generation 0 included), weak or not, quoted or not.
func ParseIfNoneMatch(v string) (IfNoneMatch, error) {
	t, err := readTag(v)
	switch {
	case err == nil:
		return IfNoneMatch{ETag: t}, nil
	case strings.TrimSpace(v) == "*":
		return IfNoneMatch{Any: true}, nil
	}
	return IfNoneMatch{}, fmt.Errorf("header %s %w (got %q)", HeaderIfNoneMatch, err, v)
}

// Matches reports whether the document tagged cur is the one the guest
// has, so that it is not sent again (304, or the long-poll waits). A tag
// of another epoch never matches: it came from another (reset or
// recovered) store. A tag of this epoch with a generation above cur's is
// the guest of a store restored from an older backup: it matches, so the
// guest waits for a publish numbered past it and generations never go back
// for it. Without an epoch, generations alone compare.
func (c IfNoneMatch) Matches(cur ETag) bool {
	switch {
	case c.Any:
		return true
	case c.Epoch != "" && c.Epoch != cur.Epoch:
		return false
	case c.Epoch != "" && c.Generation > cur.Generation:
		return true
	}
	return c.Generation == cur.Generation
}

// ParseIfMatch reads the admin API's If-Match on a publish: a plain
// generation, "0" for "nothing published yet"; neither "*" nor an epoch.
func ParseIfMatch(v string) (int64, error) {
	t, err := readTag(v)
	if err != nil || t.Epoch != "" {
		return 0, fmt.Errorf(`header %s must be a generation in quotes, like "4" ("0": nothing published yet) (got %q)`, HeaderIfMatch, v)
	}
	return t.Generation, nil
}
