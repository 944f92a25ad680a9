package relabel

import (
	"bytes"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/kongsim"
)

// FuzzRewrite feeds arbitrary pages to the rewriter: it must not panic, its
// output must parse with the strict parser, and every kept line must carry
// each added label exactly once.
func FuzzRewrite(f *testing.F) {
	page := kongsim.Sample()
	f.Add(page)
	for line := range bytes.Lines(page) {
		f.Add(line)
	}
	f.Add([]byte("kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"a\\\\\\\"\"} 1\n"))
	f.Add([]byte("kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"}\",le=\"1\"} NaN\r\n"))
	f.Add([]byte("kong_upstream_latency_ms_count{service=\"kong.command.80\",route=\"\xff\x00\"} -Inf 123\n"))
	// A label name twice: Prometheus would reject the whole scrape.
	f.Add([]byte("kong_http_requests_total{service=\"kong.command.80\",route=\"r\",code=\"200\",code=\"500\"} 1\n"))
	f.Add([]byte("kong_upstream_latency_ms_bucket{service=\"kong.command.80\",le=\"1\",service=\"kong.command.80\"} 1\n"))
	rw := New(Selection{
		Services: map[Service]Metrics{command: ^Metrics(0), billing: ^Metrics(0)},
		Mappings: map[string]Service{"httproute.default.echo.0": billing},
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, stats := rewriteAll(rw, in)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := parser.TextToMetricFamilies(bytes.NewReader(out)); err != nil && stats.Kept > 0 {
			// The same input may hold a series twice, which no rewrite can
			// mend; anything else is the rewriter's fault.
			// A label name twice is the rewriter's fault: it drops such lines.
			msg := []byte(err.Error())
			if bytes.Contains(msg, []byte("duplicate label names")) || !bytes.Contains(msg, []byte("duplicate")) && !bytes.Contains(msg, []byte("twice")) {
				t.Fatalf("output does not parse: %v\ninput:\n%q\noutput:\n%s", err, in, out)
			}
		}
		for line := range bytes.Lines(out) {
			if line[0] == '#' {
				continue
			}
			for _, l := range AddedLabels {
				if n := bytes.Count(line, []byte(","+l+"=\"")) + bytes.Count(line, []byte("{"+l+"=\"")); n != 1 {
					t.Fatalf("label %s appears %d times in %q", l, n, line)
				}
			}
		}
	})
}
