package dialect

import (
	"crypto/sha1"
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prewarm/prewarm/shared/config"
)

// node is one entry of a metadata tree (EC2's meta-data, GCE's
// computeMetadata/v1): a directory with children or a leaf with a value.
type node struct {
	name  string // path segment
	label string // how the parent lists it when it differs from name (EC2's "0=alice")
	dir   bool
	kids  []*node

	value string // leaf text

	// GCE's recursive JSON: the key in the parent object (name when
	// empty), whether a leaf is a number rather than a string, and
	// whether a directory is an array.
	key   string
	num   bool
	array bool

	// listing is the directory's listing, built once by finish.
	listing string
	// answers are GCE's rendered answers of this node, by kind.
	answers [gceModes]atomic.Pointer[gceAnswer]
}

func dirNode(name string, kids ...*node) *node {
	return &node{name: name, dir: true, kids: kids}
}

func leaf(name, value string) *node { return &node{name: name, value: value} }

// add appends kids that are not nil.
func (n *node) add(kids ...*node) *node {
	for _, k := range kids {
		if k != nil {
			n.kids = append(n.kids, k)
		}
	}
	return n
}

// finish sorts every directory (EC2 and GCE list alphabetically; arrays
// numerically) and renders its listing with sep after each entry (EC2:
// between entries only, GCE: after every entry).
func (n *node) finish(trailing bool) *node {
	if !n.dir {
		return n
	}
	if !n.array {
		sort.Slice(n.kids, func(i, j int) bool { return n.kids[i].name < n.kids[j].name })
	}
	var b strings.Builder
	for i, k := range n.kids {
		k.finish(trailing)
		if i > 0 && !trailing {
			b.WriteByte('\n')
		}
		switch {
		case k.label != "":
			b.WriteString(k.label)
		case k.dir:
			b.WriteString(k.name)
			b.WriteByte('/')
		default:
			b.WriteString(k.name)
		}
		if trailing {
			b.WriteByte('\n')
		}
	}
	n.listing = b.String()
	return n
}

// lookup walks the slash-separated path below n ("" is n itself; empty
// segments from doubled or trailing slashes are skipped).
func (n *node) lookup(path string) *node {
	cur := n
	for path != "" {
		var seg string
		seg, path, _ = strings.Cut(path, "/")
		if seg == "" {
			continue
		}
		if !cur.dir {
			return nil
		}
		var next *node
		for _, k := range cur.kids {
			if k.name == seg {
				next = k
				break
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

// What the dialects derive from a view. Every function tolerates a nil
// document: a pooled VM may ask before anything is published.

// hostname is the document's hostname, or fallback.
func hostname(v *View, fallback string) string {
	if v.Doc != nil && v.Doc.Hostname != "" {
		return v.Doc.Hostname
	}
	return fallback
}

// nics are the document's interfaces (their MACs are canonical: lower
// case, colons).
func nics(v *View) []config.Interface {
	if v.Doc == nil || v.Doc.Network == nil {
		return nil
	}
	return v.Doc.Network.Interfaces
}

// prefixes splits an interface's addresses ("10.1.0.5/24") by family,
// skipping an invalid one (a document built in code, not decoded).
func prefixes(in config.Interface) (v4, v6 []netip.Prefix) {
	for _, p := range in.Addresses {
		switch {
		case !p.IsValid():
		case p.Addr().Is4():
			v4 = append(v4, p)
		default:
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// primaryIPv4 is the address the instance is known by: the first static
// IPv4 address of the document's first interface, else the first IPv4
// address it is registered with (the source address it reaches the IMDS
// from, which on a cloud is the same).
func primaryIPv4(v *View) string {
	if ns := nics(v); len(ns) > 0 {
		if v4, _ := prefixes(ns[0]); len(v4) > 0 {
			return v4[0].Addr().String()
		}
	}
	for _, a := range v.Addresses {
		if p, err := netip.ParseAddr(a); err == nil && p.Is4() {
			return p.String()
		}
	}
	return ""
}

// sshKeys lists every user's keys in document order.
type userKey struct{ user, key string }

func sshKeys(v *View) []userKey {
	if v.Doc == nil {
		return nil
	}
	var out []userKey
	for _, u := range v.Doc.Users {
		for _, k := range u.SSHAuthorizedKeys {
			out = append(out, userKey{u.Name, k})
		}
	}
	return out
}

// numericID is a GCE-style numeric id for a name: the name itself when it
// is a decimal uint64, else a stable 64-bit hash of it (GCE ids are
// numbers, and Google's guest tools decode them as such).
func numericID(name string) string {
	if _, err := strconv.ParseUint(name, 10, 64); err == nil {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return strconv.FormatUint(h.Sum64()>>1, 10) // below 2^63: fits every signed decoder
}

// vmUUID is an Azure-style vmId for an instance id: a name-based (version
// 5 layout) UUID, stable across restarts.
func vmUUID(id string) string {
	sum := sha1.Sum([]byte("prewarm-instance:" + id))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}

// etagOf is a GCE-style entity tag: 16 hex digits of a hash of the body.
func etagOf(body []byte) string {
	h := fnv.New64a()
	h.Write(body)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	const hex = "0123456789abcdef"
	out := make([]byte, 16)
	for i, c := range b {
		out[2*i], out[2*i+1] = hex[c>>4], hex[c&15]
	}
	return string(out)
}
