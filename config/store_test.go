package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"

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

// TestStoreLogs pins what the Store logs for each sequence of reads of
// the extension file, one golden file per case under testdata/store: a
// file missing at start says what really happens, not that a
// configuration in use is kept.
func TestStoreLogs(t *testing.T) {
	tests := []struct {
		name  string
		reads [][]byte // nil: the file is missing
	}{
		{"missing-at-start", [][]byte{nil}},
		{"invalid-at-start", [][]byte{unknownField}},
		{"missing-after-good", [][]byte{commandLatency, nil}},
		{"invalid-after-good", [][]byte{commandLatency, unknownField, unknownField}},
		// Valid, but without spec.config: taken, with a warning.
		{"enables-nothing", [][]byte{bytes.Replace(commandLatency, []byte("latency: true"), []byte("latency: false"), 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.yaml")
			logs := &lockedBuffer{}
			logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey || a.Key == "sha256" || a.Key == "previous_sha256" {
					return slog.Attr{}
				}
				return a
			}}))
			s := NewStore(path, StoreOptions{}, prometheus.NewRegistry(), logger)
			for _, data := range tc.reads {
				if data == nil {
					_ = os.Remove(path)
				} else if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				_ = s.Reload()
			}
			golden.Check(t, filepath.Join("testdata", "store", tc.name+".log"), []byte(strings.ReplaceAll(logs.String(), dir, "DIR")))
		})
	}
}
