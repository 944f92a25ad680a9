package config

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStoreCountsEachRejection: every new rejection after a good load is
// logged and counted, even of content rejected before; the same bad content
// read again in a row is neither.
func TestStoreCountsEachRejection(t *testing.T) {
	good, bad := commandLatency, unknownField
	tests := []struct {
		name         string
		reads        [][]byte // nil: the file is missing
		wantFailures float64
	}{
		{"good, bad, good, bad", [][]byte{good, bad, good, bad}, 2},
		{"good, bad, bad: polled again", [][]byte{good, bad, bad}, 1},
		{"good, bad, good, good, bad", [][]byte{good, bad, good, good, bad}, 2},
		{"good, missing, good, missing", [][]byte{good, nil, good, nil}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			s := NewStore("config.yaml", StoreOptions{}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(logs, nil)))
			for _, data := range tt.reads {
				var err error
				if data == nil {
					err = errMissing
				}
				_ = s.ReloadData(data, err)
			}
			if got := testutil.ToFloat64(s.reloads.WithLabelValues("failure")); got != tt.wantFailures {
				t.Errorf("reloads_total{result=\"failure\"} = %v, want %v", got, tt.wantFailures)
			}
			if got := strings.Count(logs.String(), "extension file rejected"); float64(got) != tt.wantFailures {
				t.Errorf("%d rejections logged, want %v:\n%s", got, tt.wantFailures, logs)
			}
			if got := inUse(s); got != sha(good) {
				t.Errorf("in use %.8s, want the good file", got)
			}
		})
	}
}

// errMissing stands for what reading a missing file returns.
var errMissing = errors.New("open config.yaml: no such file or directory")
