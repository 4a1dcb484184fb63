package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestLogHandler(t *testing.T) {
	var b bytes.Buffer
	h, err := LogHandler(&b, "json", "warn", "prog serve")
	if err != nil {
		t.Fatal(err)
	}
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Errorf("level warn: info enabled %v, warn enabled %v", h.Enabled(context.Background(), slog.LevelInfo), h.Enabled(context.Background(), slog.LevelWarn))
	}
	slog.New(h).Warn("hello", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["msg"] != "hello" {
		t.Errorf("json handler wrote %q (%v)", b.String(), err)
	}
	b.Reset()
	h, err = LogHandler(&b, "text", "DEBUG", "prog serve")
	if err != nil || !h.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatalf("text/DEBUG: %v", err)
	}
	slog.New(h).Debug("hi")
	if !strings.Contains(b.String(), "msg=hi") {
		t.Errorf("text handler wrote %q", b.String())
	}
	for _, c := range []struct{ format, level, want string }{
		{"text", "loud", `--log-level "loud": want debug, info, warn or error`},
		{"xml", "info", `--log-format "xml": want text or json`},
	} {
		_, err := LogHandler(&b, c.format, c.level, "prog serve")
		var e *Error
		if !errors.As(err, &e) || e.Msg != c.want || e.Code != ExitUsage || e.Hint != "run 'prog serve --help' for usage" {
			t.Errorf("LogHandler(%q, %q) = %#v, want %q (exit %d) with a hint to prog serve's help", c.format, c.level, err, c.want, ExitUsage)
		}
	}
}
