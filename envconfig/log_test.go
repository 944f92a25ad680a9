package envconfig

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name string
		s    LogSettings
		want string // the output of one Debug and one Info record, without the time
	}{
		{"json at info", LogSettings{slog.LevelInfo, "json"}, `{"level":"INFO","msg":"info","a_key":1}` + "\n"},
		{"text at debug", LogSettings{slog.LevelDebug, "text"}, "level=DEBUG msg=debug a_key=1\nlevel=INFO msg=info a_key=1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := NewLogger(&buf, tc.s)
			// Without the time, the output is the same on every run.
			logger = slog.New(withoutTime{logger.Handler()})
			logger.Debug("debug", "a_key", 1)
			logger.Info("info", "a_key", 1)
			if got := buf.String(); got != tc.want {
				t.Errorf("logged\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// withoutTime drops the records' time, which the built-in handlers omit
// when it is zero.
type withoutTime struct{ slog.Handler }

func (h withoutTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = time.Time{}
	return h.Handler.Handle(ctx, r)
}

// TestLoggerDurations pins how a duration is written, one golden file per
// format under testdata/logger: as Go writes it (10s, 1m30s), the way the
// settings take it, in JSON too (where slog would write nanoseconds).
func TestLoggerDurations(t *testing.T) {
	for _, format := range []LogFormat{"json", "text"} {
		t.Run(string(format), func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(withoutTime{NewLogger(&buf, LogSettings{slog.LevelInfo, format}).Handler()})
			logger.Info("durations", "grace", 10*time.Second, "refresh_interval", 90*time.Second, "settle", 20*time.Millisecond,
				slog.Group("nested", "timeout", 1500*time.Millisecond), "count", 3)
			golden.Check(t, filepath.Join("testdata", "logger", string(format)+".golden"), buf.Bytes())
		})
	}
}
