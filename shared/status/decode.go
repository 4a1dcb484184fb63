package status

import (
	"strconv"
	"unicode/utf8"
)

// DecodeFast decodes data, one JSON status report, into r (which must be
// the zero Report) the way json.Unmarshal would, without reflection, and
// reports whether it did. It takes only the plain form the agent's
// encoder writes: every key spelled as the contract spells it and at most
// once per object, strings without escape sequences and in valid UTF-8,
// integers without fraction or exponent, no null, nothing after the
// object but white space. For anything else it returns false, r possibly
// half filled: decode data with encoding/json then (into a fresh Report),
// which also words the error of a malformed report. FuzzDecodeFast checks
// that every report it takes decodes to the same Report with
// json.Unmarshal.
//
// It exists for the IMDS's status path (issue 15): encoding/json's
// reflection cost about 6 µs a report, most of the server's own work.
func DecodeFast(data []byte, r *Report) bool {
	d := fastDecoder{data: data}
	if !d.object(r.field) {
		return false
	}
	d.space()
	return d.i == len(d.data)
}

// fastDecoder walks one JSON text; every method returns false when the
// text leaves DecodeFast's subset.
type fastDecoder struct {
	data []byte
	i    int
}

func (d *fastDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and reports whether the next byte is c,
// consuming it if so.
func (d *fastDecoder) next(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object decodes an object, handing each key to field (with the bit set
// of the keys seen so far, so that field can refuse a repeated one), which
// decodes the key's value.
func (d *fastDecoder) object(field func(d *fastDecoder, key []byte, seen *uint32) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	var seen uint32
	for {
		d.space()
		key, ok := d.rawString()
		if !ok || !d.next(':') {
			return false
		}
		d.space()
		if !field(d, key, &seen) {
			return false
		}
		if d.next(',') {
			continue
		}
		return d.next('}')
	}
}

// once marks field bit in seen, false if it was already there.
func once(seen *uint32, bit uint32) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// array decodes an array, calling elem for each element. An empty array
// is reported with n == 0 so the caller can make its slice non-nil, as
// json.Unmarshal does.
func (d *fastDecoder) array(elem func(d *fastDecoder) bool) (n int, ok bool) {
	if !d.next('[') {
		return 0, false
	}
	if d.next(']') {
		return 0, true
	}
	for {
		d.space()
		if !elem(d) {
			return n, false
		}
		n++
		if d.next(',') {
			continue
		}
		return n, d.next(']')
	}
}

// rawString returns the bytes of a string without escapes, control
// characters or invalid UTF-8 (which json.Unmarshal would rewrite).
func (d *fastDecoder) rawString() ([]byte, bool) {
	if d.i >= len(d.data) || d.data[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.data); j++ {
		c := d.data[j]
		switch {
		case c == '"':
			s := d.data[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (d *fastDecoder) str(dst *string) bool {
	s, ok := d.rawString()
	if ok {
		*dst = string(s)
	}
	return ok
}

func (d *fastDecoder) strings(dst *[]string) bool {
	out := []string{}
	_, ok := d.array(func(d *fastDecoder) bool {
		var s string
		if !d.str(&s) {
			return false
		}
		out = append(out, s)
		return true
	})
	*dst = out
	return ok
}

func (d *fastDecoder) boolean(dst *bool) bool {
	rest := d.data[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*dst = true
		d.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*dst = false
		d.i += 5
	default:
		return false
	}
	return d.literalEnd()
}

// literalEnd reports whether a literal or number ends where the decoder
// stands (not run together with another token: "truex", "12a").
func (d *fastDecoder) literalEnd() bool {
	if d.i == len(d.data) {
		return true
	}
	switch d.data[d.i] {
	case ' ', '\t', '\n', '\r', ',', '}', ']':
		return true
	}
	return false
}

// integer returns the text of a JSON integer: an optional minus, then 0
// or a digit 1-9 and more digits, with no fraction or exponent.
func (d *fastDecoder) integer() (string, bool) {
	start := d.i
	if d.i < len(d.data) && d.data[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || d.data[digits] == '0' && d.i-digits > 1 || !d.literalEnd() {
		return "", false
	}
	return string(d.data[start:d.i]), true
}

func (d *fastDecoder) int64(dst *int64, bits int) bool {
	s, ok := d.integer()
	if !ok {
		return false
	}
	v, err := strconv.ParseInt(s, 10, bits)
	*dst = v
	return err == nil
}

func (d *fastDecoder) int(dst *int) bool {
	var v int64
	ok := d.int64(&v, strconv.IntSize)
	*dst = int(v)
	return ok
}

func (d *fastDecoder) uint64(dst *uint64, bits int) bool {
	s, ok := d.integer()
	if !ok || s[0] == '-' {
		return false
	}
	v, err := strconv.ParseUint(s, 10, bits)
	*dst = v
	return err == nil
}

// time decodes a Time through its UnmarshalJSON, as json.Unmarshal does;
// a time it refuses is left to json.Unmarshal's error.
func (d *fastDecoder) time(dst *Time) bool {
	start := d.i
	if _, ok := d.rawString(); !ok {
		return false
	}
	return dst.UnmarshalJSON(d.data[start:d.i]) == nil
}

// objects decodes an array of objects into *dst, made anew with room for
// capacity (an empty array: empty, not nil, as json.Unmarshal leaves it),
// each element's keys by field. An element is decoded in place, in the
// slice: a local one would escape through field (an allocation each).
func objects[T any](d *fastDecoder, dst *[]T, capacity int, field func(*T, *fastDecoder, []byte, *uint32) bool) bool {
	*dst = make([]T, 0, capacity)
	_, ok := d.array(func(d *fastDecoder) bool {
		var zero T
		*dst = append(*dst, zero)
		e := &(*dst)[len(*dst)-1]
		return d.object(func(d *fastDecoder, key []byte, seen *uint32) bool { return field(e, d, key, seen) })
	})
	return ok
}

// field decodes the value of the report's key.
func (r *Report) field(d *fastDecoder, key []byte, seen *uint32) bool {
	switch string(key) {
	case "seq":
		return once(seen, 1<<0) && d.uint64(&r.Seq, 64)
	case "time":
		return once(seen, 1<<1) && d.time(&r.Time)
	case "generation":
		return once(seen, 1<<2) && d.int64(&r.Generation, 64)
	case "state":
		return once(seen, 1<<3) && d.str(&r.State)
	case "steps":
		if !once(seen, 1<<4) {
			return false
		}
		return objects(d, &r.Steps, 4, (*Step).field) // the agent's four steps at most
	case "error":
		return once(seen, 1<<5) && d.str(&r.Error)
	case "agentVersion":
		return once(seen, 1<<6) && d.str(&r.AgentVersion)
	case "event":
		return once(seen, 1<<7) && d.str(&r.Event)
	case "interface":
		return once(seen, 1<<8) && d.str(&r.Interface)
	case "addresses":
		return once(seen, 1<<9) && d.strings(&r.Addresses)
	case "rebootRequired":
		return once(seen, 1<<10) && d.boolean(&r.RebootRequired)
	case "attempt":
		return once(seen, 1<<11) && d.int(&r.Attempt)
	case "linkEvents":
		if !once(seen, 1<<12) {
			return false
		}
		return objects(d, &r.LinkEvents, 0, (*LinkEvent).field)
	case "sshHostKeys":
		if !once(seen, 1<<13) {
			return false
		}
		return objects(d, &r.SSHHostKeys, 0, (*HostKey).field)
	}
	return false
}

func (s *Step) field(d *fastDecoder, key []byte, seen *uint32) bool {
	switch string(key) {
	case "name":
		return once(seen, 1<<0) && d.str(&s.Name)
	case "ok":
		return once(seen, 1<<1) && d.boolean(&s.OK)
	case "ms":
		return once(seen, 1<<2) && d.int64(&s.MS, 64)
	case "changed":
		return once(seen, 1<<3) && d.boolean(&s.Changed)
	case "rebootRequired":
		return once(seen, 1<<4) && d.boolean(&s.RebootRequired)
	case "error":
		return once(seen, 1<<5) && d.str(&s.Error)
	}
	return false
}

func (e *LinkEvent) field(d *fastDecoder, key []byte, seen *uint32) bool {
	switch string(key) {
	case "time":
		return once(seen, 1<<0) && d.time(&e.Time)
	case "kind":
		return once(seen, 1<<1) && d.str(&e.Kind)
	case "interface":
		return once(seen, 1<<2) && d.str(&e.Interface)
	case "carrierChanges":
		var v uint64
		ok := once(seen, 1<<3) && d.uint64(&v, 32)
		e.CarrierChanges = uint32(v)
		return ok
	case "coalesced":
		return once(seen, 1<<4) && d.int(&e.Coalesced)
	case "client":
		return once(seen, 1<<5) && d.str(&e.Client)
	case "oldAddresses":
		return once(seen, 1<<6) && d.strings(&e.OldAddresses)
	case "addresses":
		return once(seen, 1<<7) && d.strings(&e.Addresses)
	case "ms":
		return once(seen, 1<<8) && d.int64(&e.MS, 64)
	case "error":
		return once(seen, 1<<9) && d.str(&e.Error)
	}
	return false
}

func (k *HostKey) field(d *fastDecoder, key []byte, seen *uint32) bool {
	switch string(key) {
	case "type":
		return once(seen, 1<<0) && d.str(&k.Type)
	case "key":
		return once(seen, 1<<1) && d.str(&k.Key)
	case "fingerprint":
		return once(seen, 1<<2) && d.str(&k.Fingerprint)
	}
	return false
}
