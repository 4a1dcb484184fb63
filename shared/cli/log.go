package cli

import (
	"io"
	"log/slog"
)

// LogHandler is the handler of the --log-format (text or json) and
// --log-level (debug, info, warn, error) flags every program has, writing
// to w; a bad value is a usage error naming the flag and what it takes,
// with a hint to cmd's help (cmd: the command's path, "prewarm-pool serve").
func LogHandler(w io.Writer, format, level, cmd string) (slog.Handler, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, Usagef("--log-level %q: want debug, info, warn or error", level).WithHint("run '%s --help' for usage", cmd)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.NewTextHandler(w, o), nil
	case "json":
		return slog.NewJSONHandler(w, o), nil
	}
	return nil, Usagef("--log-format %q: want text or json", format).WithHint("run '%s --help' for usage", cmd)
}
