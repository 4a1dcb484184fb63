package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/prewarm/prewarm/shared/config"
)

// maxSecrets bounds how many distinct secrets a Redactor remembers.
const maxSecrets = 64

// Redactor removes the plaintext passwords of the documents the agent has
// seen from every string it is given: report errors, log messages and
// attributes. It is the last line of defence: the agent never puts a
// password into a report or a log line on purpose, but an error from a
// platform step (a failed command echoing its input) might.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string
}

// NewRedactor returns an empty Redactor.
func NewRedactor() *Redactor { return &Redactor{} }

// Add remembers secrets (empty strings and the REDACTED marker are ignored).
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, s := range secrets {
		if s == "" || s == config.Redacted {
			continue
		}
		for _, have := range r.secrets {
			if have == s {
				continue next
			}
		}
		r.secrets = append(r.secrets, s)
		if len(r.secrets) > maxSecrets {
			r.secrets = r.secrets[1:]
		}
	}
}

// String returns s with every known secret replaced by REDACTED.
func (r *Redactor) String(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, config.Redacted)
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
