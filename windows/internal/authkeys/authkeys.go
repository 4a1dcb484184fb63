package authkeys

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Marker prefixes; the block's owner follows them.
const (
	beginPrefix = "# BEGIN prewarm-agent keys for "
	endPrefix   = "# END prewarm-agent keys for "
)

// ErrBrokenBlock is returned for a file whose marker lines for the owner do
// not pair up (a BEGIN without its END, or a second block): the agent then
// refuses to guess which lines are its own.
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

func checkOwner(owner string) error {
	if owner == "" || strings.ContainsAny(owner, " \t\r\n\x00#") {
		return fmt.Errorf("%w: %q", ErrBadOwner, owner)
	}
	return nil
}

type block struct{ start, end int } // line indexes of BEGIN and END

// find locates owner's block among lines (without line endings).
func find(lines []string, owner string) (block, bool, error) {
	begin, end := beginPrefix+owner, endPrefix+owner
	b := block{-1, -1}
	for i, l := range lines {
		switch strings.TrimRight(l, " \t") {
		case begin:
			if b.start >= 0 {
				return b, false, fmt.Errorf("%w: second block for %q at line %d", ErrBrokenBlock, owner, i+1)
			}
			b.start = i
		case end:
			if b.start < 0 || b.end >= 0 {
				return b, false, fmt.Errorf("%w: END for %q without BEGIN at line %d", ErrBrokenBlock, owner, i+1)
			}
			b.end = i
		}
	}
	if b.start >= 0 && b.end < 0 {
		return b, false, fmt.Errorf("%w: BEGIN for %q at line %d has no END", ErrBrokenBlock, owner, b.start+1)
	}
	return b, b.start >= 0, nil
}

// splitLines splits content into lines without their endings and reports
// the line ending the file uses ("\r\n" if its first line ends so).
func splitLines(content []byte) ([]string, string) {
	eol := "\n"
	if i := bytes.IndexByte(content, '\n'); i > 0 && content[i-1] == '\r' {
		eol = "\r\n"
	}
	s := strings.TrimSuffix(string(content), "\n")
	if s == "" && len(content) <= 1 {
		return nil, eol
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines, eol
}

// Keys returns the keys in owner's block of content (nil if it has none).
func Keys(content []byte, owner string) ([]string, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	lines, _ := splitLines(content)
	b, ok, err := find(lines, owner)
	if err != nil || !ok {
		return nil, err
	}
	var keys []string
	for _, l := range lines[b.start+1 : b.end] {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			keys = append(keys, t)
		}
	}
	return keys, nil
}

// Set returns content with owner's block holding exactly keys (duplicates
// dropped, order kept), and whether that differs from content. With no keys
// the block is removed. A file without the block gets it appended. newEOL
// is the line ending of a file that has none yet ("\r\n" on Windows).
func Set(content []byte, owner string, keys []string, newEOL string) ([]byte, bool, error) {
	if err := checkOwner(owner); err != nil {
		return nil, false, err
	}
	seen := map[string]bool{}
	var want []string
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return nil, false, err
		}
		k = strings.TrimSpace(k)
		if !seen[k] {
			seen[k] = true
			want = append(want, k)
		}
	}
	lines, eol := splitLines(content)
	if len(content) == 0 && newEOL != "" {
		eol = newEOL
	}
	b, ok, err := find(lines, owner)
	if err != nil {
		return nil, false, err
	}
	var blk []string
	if len(want) > 0 {
		blk = append(blk, beginPrefix+owner)
		blk = append(blk, want...)
		blk = append(blk, endPrefix+owner)
	}
	var out []string
	if ok {
		out = append(out, lines[:b.start]...)
		out = append(out, blk...)
		out = append(out, lines[b.end+1:]...)
	} else {
		out = append(append(out, lines...), blk...)
	}
	var buf bytes.Buffer
	for _, l := range out {
		buf.WriteString(l)
		buf.WriteString(eol)
	}
	// Only the block decides whether anything changed: a file that lacked
	// a final newline, or mixed endings outside the block, is not rewritten
	// for that alone.
	if !ok && len(blk) == 0 {
		return content, false, nil
	}
	if ok {
		old := lines[b.start : b.end+1]
		if equal(old, blk) {
			return content, false, nil
		}
	}
	return buf.Bytes(), true, nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
