package api

import (
	"strconv"
	"strings"
	"testing"
)

// TestParseETag: the config's ETag as the agent reads it off the wire
// (the cases of the agent's former parseETag test).
func TestParseETag(t *testing.T) {
	for _, c := range []struct {
		in    string
		want  int64
		epoch string
		ok    bool
	}{
		{`"4"`, 4, "", true}, {`W/"12"`, 12, "", true}, {`4`, 0, "", false}, {`""`, 0, "", false},
		{`"-1"`, 0, "", false}, {`"x"`, 0, "", false}, {`"+4"`, 0, "", false}, {`"04"`, 0, "", false},
		{`"0"`, 0, "", false}, {`"99999999999999999999"`, 0, "", false},
		{`"4.9f86d081884c7d65"`, 4, "9f86d081884c7d65", true},
		{`W/"4.9f86d081884c7d65"`, 4, "9f86d081884c7d65", true},
		{` "4" `, 4, "", true},
		{`"4.9F86D081884C7D65"`, 0, "", false}, // lowercase only
		{`"4.9f86d081884c7d6"`, 0, "", false},  // 15 hex
		{`"4.9f86d081884c7d650"`, 0, "", false},
		{`"4."`, 0, "", false}, {`".9f86d081884c7d65"`, 0, "", false},
		{`"4.9f86d081884c7d65.1"`, 0, "", false}, {`"4.9f86d081884c7d6g"`, 0, "", false},
		{`"4.9f86d081884c7d65`, 0, "", false}, {"\"4\r\nX: y\"", 0, "", false},
		{`*`, 0, "", false}, {`W/W/"4"`, 0, "", false}, {`W/ "4"`, 0, "", false},
	} {
		got, err := ParseETag(c.in)
		if (err == nil) != c.ok || got.Generation != c.want || got.Epoch != c.epoch {
			t.Errorf("ParseETag(%q) = %+v, %v; want %d, %q, ok %v", c.in, got, err, c.want, c.epoch, c.ok)
		}
	}
}

func TestETagString(t *testing.T) {
	for tag, want := range map[ETag]string{
		{Generation: 4}: `"4"`,
		{Generation: 4, Epoch: "9f86d081884c7d65"}: `"4.9f86d081884c7d65"`,
		{}: `"0"`,
	} {
		if got := tag.String(); got != want {
			t.Errorf("%+v.String() = %s, want %s", tag, got, want)
		}
	}
}

// TestParseIfNoneMatch: the IMDS reads a guest's If-None-Match leniently
// (PROTOCOL.md section 2: both forms, weak, "*"; generation 0, bare and
// sign or zero-padded numbers as it always has), and a bad epoch is 400.
func TestParseIfNoneMatch(t *testing.T) {
	const ep = "9f86d081884c7d65"
	for _, c := range []struct {
		in   string
		want IfNoneMatch
		ok   bool
	}{
		{`"4.` + ep + `"`, IfNoneMatch{ETag: ETag{4, ep}}, true},
		{`W/"4.` + ep + `"`, IfNoneMatch{ETag: ETag{4, ep}}, true},
		{`"0.` + ep + `"`, IfNoneMatch{ETag: ETag{0, ep}}, true},
		{`"4"`, IfNoneMatch{ETag: ETag{Generation: 4}}, true},
		{`W/"7"`, IfNoneMatch{ETag: ETag{Generation: 7}}, true},
		{`4`, IfNoneMatch{ETag: ETag{Generation: 4}}, true},
		{`"04"`, IfNoneMatch{ETag: ETag{Generation: 4}}, true},
		{` * `, IfNoneMatch{Any: true}, true},
		{`"abc"`, IfNoneMatch{}, false},
		{`"-1"`, IfNoneMatch{}, false},
		{`""`, IfNoneMatch{}, false},
		{`W/*`, IfNoneMatch{}, false},
		{`"1."`, IfNoneMatch{}, false},
		{`"1.9F86D081884C7D65"`, IfNoneMatch{}, false},
		{`"1.0123456789abcde""`, IfNoneMatch{}, false},
		{`"1.0123456789abcdef.0123456789abcdef"`, IfNoneMatch{}, false},
	} {
		got, err := ParseIfNoneMatch(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseIfNoneMatch(%q) = %+v, %v; want %+v, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "If-None-Match") {
			t.Errorf("ParseIfNoneMatch(%q): error %q does not name the header", c.in, err)
		}
	}
}

// TestIfNoneMatchMatches: which document a guest's tag already names
// (PROTOCOL.md section 2 and the restored-backup rule of section 3).
func TestIfNoneMatchMatches(t *testing.T) {
	const ep, other = "9f86d081884c7d65", "0123456789abcdef"
	cur := ETag{Generation: 4, Epoch: ep}
	for _, c := range []struct {
		name string
		inm  IfNoneMatch
		want bool
	}{
		{"same tag", IfNoneMatch{ETag: cur}, true},
		{"generation alone", IfNoneMatch{ETag: ETag{Generation: 4}}, true},
		{"older generation", IfNoneMatch{ETag: ETag{Generation: 3, Epoch: ep}}, false},
		{"older generation alone", IfNoneMatch{ETag: ETag{Generation: 3}}, false},
		{"another epoch, same generation", IfNoneMatch{ETag: ETag{Generation: 4, Epoch: other}}, false},
		{"another epoch, later generation", IfNoneMatch{ETag: ETag{Generation: 9, Epoch: other}}, false},
		{"this epoch, ahead (restored backup)", IfNoneMatch{ETag: ETag{Generation: 9, Epoch: ep}}, true},
		{"generation alone, ahead", IfNoneMatch{ETag: ETag{Generation: 9}}, false},
		{"any", IfNoneMatch{Any: true}, true},
	} {
		if got := c.inm.Matches(cur); got != c.want {
			t.Errorf("%s: %+v.Matches(%+v) = %v, want %v", c.name, c.inm, cur, got, c.want)
		}
	}
	// A store not reached yet tags its documents without an epoch: a tag
	// with one is then never current.
	if (IfNoneMatch{ETag: cur}).Matches(ETag{Generation: 4}) {
		t.Error("a tag with an epoch matches a document without one")
	}
}

func TestParseIfMatch(t *testing.T) {
	for in, want := range map[string]int64{`"4"`: 4, `"0"`: 0, `W/"4"`: 4, `4`: 4} {
		if got, err := ParseIfMatch(in); err != nil || got != want {
			t.Errorf("ParseIfMatch(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{`soon`, `*`, `"4.9f86d081884c7d65"`, `"-1"`, `""`} {
		if _, err := ParseIfMatch(in); err == nil || !strings.Contains(err.Error(), "If-Match") {
			t.Errorf("ParseIfMatch(%q) = %v; want an error naming If-Match", in, err)
		}
	}
}

// FuzzParseETag: the ETag comes off the wire, and an accepted one is sent
// back verbatim in If-None-Match: it must be a well-formed header value of
// the two forms, and its parts must be what it says. What ParseETag
// accepts, the IMDS's If-None-Match reading accepts as the same tag.
func FuzzParseETag(f *testing.F) {
	for _, s := range []string{`"4"`, `W/"1"`, `"4.9f86d081884c7d65"`, `W/"4.9f86d081884c7d65"`,
		`"4.9F86D081884C7D65"`, `"4."`, `".9f86d081884c7d65"`, `"4.9f86d081884c7d65.1"`, `"+4"`, `"04"`,
		`"9223372036854775808"`, "\"4\r\nX: y\"", `" 4"`, `"4 "`, `*`, `4`, `"0"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := ParseETag(s)
		if err != nil {
			if tag != (ETag{}) {
				t.Errorf("ParseETag(%q) refused but returned %+v", s, tag)
			}
			return
		}
		if tag.Generation <= 0 || (tag.Epoch != "" && !ValidEpoch(tag.Epoch)) {
			t.Errorf("ParseETag(%q) accepted %+v", s, tag)
		}
		want := strconv.FormatInt(tag.Generation, 10)
		if tag.Epoch != "" {
			want += "." + tag.Epoch
		}
		if core := strings.TrimPrefix(strings.TrimSpace(s), "W/"); core != `"`+want+`"` {
			t.Errorf("ParseETag(%q) = %+v: not what it says", s, tag)
		}
		if inm, err := ParseIfNoneMatch(s); err != nil || inm != (IfNoneMatch{ETag: tag}) {
			t.Errorf("ParseIfNoneMatch(%q) = %+v, %v; want %+v", s, inm, err, tag)
		}
	})
}
