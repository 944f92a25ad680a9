package envconfig

import (
	"fmt"
	"io"
	"log/slog"
)

// LogSettings are the log settings both programs read: embed it in a
// settings struct, and its variables (<prefix>LOG_LEVEL, <prefix>LOG_FORMAT)
// become that struct's, in its place.
type LogSettings struct {
	LogLevel  slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat LogFormat  `env:"LOG_FORMAT" envDefault:"json" help:"json or text"`
}

// NewLogger returns a logger that writes records at s.LogLevel and above
// to w, as JSON or as text (logfmt) as s.LogFormat says. A duration is
// written as Go writes it (1m30s, 250ms) in both, as the settings take
// it, not as the JSON handler's nanoseconds.
func NewLogger(w io.Writer, s LogSettings) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.LogLevel, ReplaceAttr: durationString}
	if s.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationString writes a duration attribute as its String.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// LogFormat is json or text.
type LogFormat string

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *LogFormat) UnmarshalText(text []byte) error {
	switch s := LogFormat(text); s {
	case "json", "text":
		*f = s
		return nil
	default:
		return fmt.Errorf("want json or text, not %q", s)
	}
}
