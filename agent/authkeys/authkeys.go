package authkeys

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Block names the two marker lines of one block the agent owns.
type Block struct {
	Begin, End string
}

// Managed is the block of a file that holds one user's keys (Linux's
// ~/.ssh/authorized_keys). Its markers name no owner: the file is the
// user's own.
var Managed = Block{
	Begin: "# BEGIN prewarm-agent managed keys (do not edit inside this block)",
	End:   "# END prewarm-agent managed keys",
}

// Marker prefixes of an owner's block; the owner follows them.
const (
	beginPrefix = "# BEGIN prewarm-agent keys for "
	endPrefix   = "# END prewarm-agent keys for "
)

// Owned returns the block named after owner, for a file several users' keys
// share (Windows' administrators_authorized_keys). A block of another owner
// is a foreign line like any other.
func Owned(owner string) (Block, error) {
	if owner == "" || strings.ContainsAny(owner, " \t\r\n\x00#") {
		return Block{}, fmt.Errorf("%w: %q", ErrBadOwner, owner)
	}
	return Block{Begin: beginPrefix + owner, End: endPrefix + owner}, nil
}

// ErrBrokenBlock is returned for a file whose marker lines of the block do
// not pair up into at most one block (a BEGIN without its END, an END
// without its BEGIN, a second block): the agent then cannot tell its lines
// from the user's, so it refuses to guess and changes nothing.
var ErrBrokenBlock = errors.New("broken prewarm-agent marker block")

// ErrBadKey is returned for a key that could not be one line of an
// authorized_keys file.
var ErrBadKey = errors.New("invalid authorized key")

// ErrBadOwner is returned for an owner name that could not be part of a
// marker line.
var ErrBadOwner = errors.New("invalid block owner")

// CheckKey reports whether key can be written as one authorized_keys line.
// It does not parse the key: sshd does, and ignores a line it cannot use.
func CheckKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return fmt.Errorf("%w: empty", ErrBadKey)
	case strings.ContainsAny(key, "\r\n\x00"):
		// A line break would let one "key" smuggle in further lines.
		return fmt.Errorf("%w: contains a line break or NUL", ErrBadKey)
	case strings.HasPrefix(strings.TrimSpace(key), "#"):
		return fmt.Errorf("%w: a comment line", ErrBadKey)
	}
	return nil
}

// file is an authorized_keys file cut into lines. Each line keeps its own
// bytes, a CR of a CRLF ending included, so a rewrite gives every line the
// agent did not write back byte for byte.
type file struct {
	lines []string
	eol   string // "\r\n" if the first line ends so, else "\n"
	open  bool   // the last line has no line ending
}

func parse(content []byte) file {
	f := file{eol: "\n"}
	s := string(content)
	if i := strings.IndexByte(s, '\n'); i > 0 && s[i-1] == '\r' {
		f.eol = "\r\n"
	}
	if s != "" {
		f.open = !strings.HasSuffix(s, "\n")
		f.lines = strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	return f
}

// find locates b among the lines: the indexes of its BEGIN and END, or
// ok false when the file has no block.
func (b Block) find(lines []string) (start, end int, ok bool, err error) {
	start, end = -1, -1
	for i, l := range lines {
		// Trailing blanks and a CR (an editor's or a CRLF file's) do not
		// hide a marker.
		switch strings.TrimRight(l, " \t\r") {
		case b.Begin:
			if start >= 0 {
				return 0, 0, false, fmt.Errorf("%w: a second BEGIN marker at line %d", ErrBrokenBlock, i+1)
			}
			start = i
		case b.End:
			if start < 0 || end >= 0 {
				return 0, 0, false, fmt.Errorf("%w: an END marker without its BEGIN at line %d", ErrBrokenBlock, i+1)
			}
			end = i
		}
	}
	if start >= 0 && end < 0 {
		return 0, 0, false, fmt.Errorf("%w: the BEGIN marker at line %d has no END", ErrBrokenBlock, start+1)
	}
	return start, end, start >= 0, nil
}

// Keys returns the keys in b's block of content (nil if it has none).
func (b Block) Keys(content []byte) ([]string, error) {
	f := parse(content)
	start, end, ok, err := b.find(f.lines)
	if err != nil || !ok {
		return nil, err
	}
	var keys []string
	for _, l := range f.lines[start+1 : end] {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			keys = append(keys, t)
		}
	}
	return keys, nil
}

// Set returns content with b's block holding exactly keys (trimmed,
// duplicates dropped, order kept), and whether that differs from content.
// The block is replaced where it stands; a file without one gets it
// appended; with no keys it is removed. Every other line is kept byte for
// byte and in order; only a last line without a line ending gets one. The
// block's lines end as the file's first line does, or with newEOL in a file
// that is empty ("\r\n" on Windows). A file whose markers do not pair up is
// ErrBrokenBlock and content is not rewritten.
func (b Block) Set(content []byte, keys []string, newEOL string) ([]byte, bool, error) {
	var want []string
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return nil, false, err
		}
		if k = strings.TrimSpace(k); !slices.Contains(want, k) {
			want = append(want, k)
		}
	}
	f := parse(content)
	if len(content) == 0 && newEOL != "" {
		f.eol = newEOL
	}
	start, end, ok, err := b.find(f.lines)
	if err != nil {
		return nil, false, err
	}
	var blk []string
	if len(want) > 0 {
		blk = append(append(append(blk, b.Begin), want...), b.End)
	}
	// Only the block decides whether anything changed: a file that lacks
	// a final line ending, or mixes endings, is not rewritten for that
	// alone.
	if !ok && len(blk) == 0 {
		return content, false, nil
	}
	before, after := f.lines, []string(nil)
	if ok {
		old := f.lines[start : end+1]
		if slices.EqualFunc(old, blk, func(o, n string) bool { return strings.TrimSuffix(o, "\r") == n }) {
			return content, false, nil
		}
		before, after = f.lines[:start], f.lines[end+1:]
	}
	var sb strings.Builder
	foreign := func(ls []string, last bool) {
		for i, l := range ls {
			sb.WriteString(l)
			if last && f.open && i == len(ls)-1 {
				sb.WriteString(f.eol)
			} else {
				sb.WriteString("\n")
			}
		}
	}
	foreign(before, !ok)
	for _, l := range blk {
		sb.WriteString(l)
		sb.WriteString(f.eol)
	}
	foreign(after, true)
	out := sb.String()
	if out == "" {
		return nil, true, nil
	}
	return []byte(out), true, nil
}

// Keys returns the keys in owner's block of content (nil if it has none).
func Keys(content []byte, owner string) ([]string, error) {
	b, err := Owned(owner)
	if err != nil {
		return nil, err
	}
	return b.Keys(content)
}

// Set is Owned(owner).Set(content, keys, newEOL).
func Set(content []byte, owner string, keys []string, newEOL string) ([]byte, bool, error) {
	b, err := Owned(owner)
	if err != nil {
		return nil, false, err
	}
	return b.Set(content, keys, newEOL)
}
