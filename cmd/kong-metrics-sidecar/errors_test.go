package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// TestErrorMessages pins what the sidecar says for the most common
// mistakes, one golden file per case under testdata/errors: each names the
// variable or file, says what was expected and gives a valid example.
// Settings problems exit 2, all of them reported at once; -check-config
// exits 1 on a file that enables nothing.
func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string
	}{
		{"upstream-url-without-scheme", nil, []string{"SIDECAR_UPSTREAM_URL=127.0.0.1:8100/metrics"}},
		{"upstream-url-with-password", nil, []string{"SIDECAR_UPSTREAM_URL=user:hunter2@kong:8100/metrics"}},
		{"log-level-unknown", nil, []string{"SIDECAR_LOG_LEVEL=verbose"}},
		{"listen-addr-port-only", nil, []string{"SIDECAR_LISTEN_ADDR=9542"}},
		{"duration-without-unit", nil, []string{"SIDECAR_SCRAPE_TIMEOUT=10"}},
		{"every-problem-at-once", nil, []string{
			"SIDECAR_LISTEN_ADDR=9542", "SIDECAR_LOG_LEVEL=verbose", "SIDECAR_UPSTREAM_URL=127.0.0.1:8100/metrics",
			"SIDECAR_SCRAPE_TIMEOUT=10", "SIDECAR_CONFIG_POLL_INTERVAL=0s", "SIDECAR_LISTEN_ADRESS=:9542",
			"SIDECAR_KONG_ADMIN_CERT_FILE=/tls/tls.crt",
		}},
		{"unexpected-argument", []string{"serve"}, nil},
		{"check-config-no-config", []string{"-check-config", filepath.Join("testdata", "errors", "no-config.yaml")}, nil},
		{"check-config-all-false", []string{"-check-config", filepath.Join("testdata", "errors", "config-all-false.yaml")}, nil},
		{"check-config-tab", []string{"-check-config", filepath.Join("..", "..", "config", "testdata", "invalid-tab.yaml")}, nil},
		{"check-config-indentation", []string{"-check-config", filepath.Join("..", "..", "config", "testdata", "invalid-indentation.yaml")}, nil},
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

// TestErrorsDocQuotesTheMessages keeps docs/errors.md true to the code:
// each settings message it quotes is in the golden output, and so are the
// extension file's log messages it names.
func TestErrorsDocQuotesTheMessages(t *testing.T) {
	doc := string(must(os.ReadFile(filepath.Join("..", "..", "docs", "errors.md"))))
	every := string(must(os.ReadFile(filepath.Join("testdata", "errors", "every-problem-at-once.golden"))))
	_, block, _ := strings.Cut(doc, "```text\n")
	block, _, _ = strings.Cut(block, "```")
	quoted := 0
	for line := range strings.SplitSeq(strings.TrimSpace(block), "\n") {
		if strings.HasSuffix(line, "…)") {
			line, _, _ = strings.Cut(line, "…")
		}
		if !strings.Contains(every, line) {
			t.Errorf("docs/errors.md quotes %q, which the sidecar does not print (testdata/errors/every-problem-at-once.golden)", line)
		}
		quoted++
	}
	if quoted < 5 {
		t.Errorf("docs/errors.md quotes %d lines of the settings report, want its example", quoted)
	}
	logs := string(must(os.ReadFile(filepath.Join("..", "..", "config", "testdata", "store", "missing-at-start.log")))) +
		string(must(os.ReadFile(filepath.Join("..", "..", "config", "testdata", "store", "invalid-after-good.log"))))
	for _, msg := range []string{
		"extension file not loaded; until a valid one is, no Kong series are served, only the sidecar's own metrics",
		"extension file rejected; keeping the configuration in use",
	} {
		if !strings.Contains(strings.Join(strings.Fields(doc), " "), msg) || !strings.Contains(logs, msg) {
			t.Errorf("%q: not both in docs/errors.md and in the store's logs", msg)
		}
	}
}
