package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prewarm/prewarm/shared/config"
)

// maxSecretBytes bounds how many bytes of secrets a Redactor remembers
// from documents before the latest one. The secrets of the latest
// document are always all kept, whatever their number or size.
const maxSecretBytes = 64 << 10

// Redactor removes the plaintext passwords of the documents the agent has
// seen from every string it is given: report errors, log messages and
// attributes. It is the last line of defence: the agent never puts a
// password into a report or a log line on purpose, but an error from a
// platform step (a failed command echoing its input) might.
//
// Besides each secret as is, it removes the secret as strconv.Quote and
// JSON escape it, so that a secret with a quote, backslash or control
// character in it is caught inside a %q-formatted or JSON-encoded string.
type Redactor struct {
	mu      sync.RWMutex
	doc     int      // number of Add calls: the latest document's serial
	secrets []secret // oldest first
	bytes   int      // total length of secrets
	// patterns are every form of every secret, longest first, so that
	// a secret containing another is replaced whole.
	patterns []string
}

type secret struct {
	s   string
	doc int // serial of the latest document that had it
}

// NewRedactor returns an empty Redactor.
func NewRedactor() *Redactor { return &Redactor{} }

// Add remembers the secrets of one document (empty strings and the
// REDACTED marker are ignored). All of them are kept; secrets of earlier
// documents are forgotten, oldest first, only past maxSecretBytes.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.doc++
	changed := false
	for _, s := range secrets {
		if s == "" || s == config.Redacted {
			continue
		}
		found := false
		for i := range r.secrets {
			if r.secrets[i].s == s {
				// Seen again: it belongs to the latest document now.
				sec := r.secrets[i]
				sec.doc = r.doc
				r.secrets = append(append(r.secrets[:i:i], r.secrets[i+1:]...), sec)
				found = true
				break
			}
		}
		if !found {
			r.secrets = append(r.secrets, secret{s: s, doc: r.doc})
			r.bytes += len(s)
			changed = true
		}
	}
	// Forget the oldest secrets of earlier documents past the bound; never
	// one of this document's.
	for r.bytes > maxSecretBytes && len(r.secrets) > 0 && r.secrets[0].doc != r.doc {
		r.bytes -= len(r.secrets[0].s)
		r.secrets = r.secrets[1:]
		changed = true
	}
	if changed {
		r.patterns = patternsOf(r.secrets)
	}
}

// patternsOf returns every form of every secret, without duplicates,
// longest first.
func patternsOf(secrets []secret) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, sec := range secrets {
		add(sec.s)
		// The escaped forms, without their surrounding quotes.
		q := strconv.Quote(sec.s)
		add(q[1 : len(q)-1])
		q = strconv.QuoteToASCII(sec.s)
		add(q[1 : len(q)-1])
		if b, err := json.Marshal(sec.s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(sec.s) == nil {
			b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
			add(string(b[1 : len(b)-1]))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// String returns s with every known secret replaced by REDACTED.
func (r *Redactor) String(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, p := range r.patterns {
		if strings.Contains(s, p) {
			s = strings.ReplaceAll(s, p, config.Redacted)
		}
	}
	return s
}

// secretsIn returns the values of every "password" member in a JSON text,
// at any depth. It is lenient on purpose: a document that fails strict
// decoding must not leak its password through the error either.
func secretsIn(raw []byte) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && strings.EqualFold(k, "password") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

// Handler wraps h so that every message and attribute it handles is
// redacted.
func (r *Redactor) Handler(h slog.Handler) slog.Handler { return &redactHandler{r: r, h: h} }

type redactHandler struct {
	r *Redactor
	h slog.Handler
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		as := make([]any, len(g))
		for i, x := range g {
			as[i] = h.attr(x)
		}
		return slog.Group(a.Key, as...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.r.String(x.Error()))
		case []string:
			c := make([]string, len(x))
			for i, s := range x {
				c[i] = h.r.String(s)
			}
			return slog.Any(a.Key, c)
		case interface{ String() string }:
			return slog.String(a.Key, h.r.String(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := make([]slog.Attr, len(as))
	for i, a := range as {
		c[i] = h.attr(a)
	}
	return &redactHandler{r: h.r, h: h.h.WithAttrs(c)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{r: h.r, h: h.h.WithGroup(name)}
}
