package envconfig

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
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
