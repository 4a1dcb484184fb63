package service

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Event IDs the Event Log handler uses, one per level. Event sources
// registered with EventCreate.exe as their message file (as kardianos and
// the MSI register prewarm-agent) accept IDs 1 to 1000.
const (
	EventInfo    = 1
	EventWarning = 2
	EventError   = 3
)

// EventWriter is the part of golang.org/x/sys/windows/svc/eventlog.Log the
// handler uses.
type EventWriter interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// EventLogHandler is an slog.Handler that writes each record as one event:
// the message followed by its attributes in key=value form (the Event Log
// stamps its own time and level).
type EventLogHandler struct {
	w     EventWriter
	mu    *sync.Mutex
	buf   *bytes.Buffer
	inner slog.Handler
}

// NewEventLogHandler returns a handler writing to w. opts.Level sets the
// minimum level (default Info).
func NewEventLogHandler(w EventWriter, opts *slog.HandlerOptions) *EventLogHandler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	replace := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		if len(groups) == 0 && a.Key == slog.MessageKey {
			// The message leads the event as plain text, not msg="...".
			return slog.Attr{}
		}
		if replace != nil {
			return replace(groups, a)
		}
		return a
	}
	buf := &bytes.Buffer{}
	return &EventLogHandler{w: w, mu: &sync.Mutex{}, buf: buf, inner: slog.NewTextHandler(buf, &o)}
}

// Enabled implements slog.Handler.
func (h *EventLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *EventLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := r.Message
	if attrs := strings.TrimSpace(h.buf.String()); attrs != "" {
		msg += " " + attrs
	}
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Error(EventError, msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(EventWarning, msg)
	default:
		return h.w.Info(EventInfo, msg)
	}
}

// WithAttrs implements slog.Handler.
func (h *EventLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

// WithGroup implements slog.Handler.
func (h *EventLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
