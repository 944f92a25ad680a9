package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// TestErrorMessages pins what the injector says for bad flags and
// settings, one golden file per case under testdata/errors: the same
// report and exit code 2 as the sidecar's, every problem at once.
func TestErrorMessages(t *testing.T) {
	const image = "INJECTOR_SIDECAR_IMAGE=ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:v1.0.0"
	tests := []struct {
		name      string
		args, env []string
	}{
		{"every-problem-at-once", nil, []string{
			"INJECTOR_LISTEN_ADDR=9443", "INJECTOR_LOG_LEVEL=verbose", "INJECTOR_SIDECAR_MIN_FETCH_INTERVAL=10",
			"INJECTOR_LISTEN_ADRESS=:9443",
		}},
		{"listen-addr-port-only", nil, []string{image, "INJECTOR_LISTEN_ADDR=9443"}},
		{"unexpected-argument", []string{"serve"}, []string{image}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, tc.env, &stdout, &stderr)
			got := fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, &stdout, &stderr)
			golden.Check(t, filepath.Join("testdata", "errors", tc.name+".golden"), []byte(got))
		})
	}
}
