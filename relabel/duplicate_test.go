package relabel

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestDuplicateLabelNameDropped: a line with a label name twice is dropped
// as malformed, whichever path reads it, and the lines around it are kept.
// Prometheus would reject the whole scrape for it.
func TestDuplicateLabelNameDropped(t *testing.T) {
	const (
		good   = `kong_http_requests_total{service="kong.command.80",route="r",code="200",source="service",workspace="default",consumer=""} 1`
		bucket = `kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="1"} 1`
	)
	tests := map[string]string{
		"code twice":                     `kong_http_requests_total{service="kong.command.80",route="r",code="200",code="500",workspace="default",consumer=""} 1`,
		"service twice":                  `kong_http_requests_total{service="kong.command.80",route="r",code="200",service="kong.command.80"} 1`,
		"key twice at once":              `kong_http_requests_total{service="kong.command.80",service="kong.command.80",code="200"} 1`,
		"last label twice in a run":      `kong_http_requests_total{service="kong.command.80",route="r",code="200",source="service",workspace="default",route="r"} 1`,
		"le twice":                       `kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",workspace="default",le="1",le="2"} 1`,
		"bucket with a label twice":      `kong_upstream_latency_ms_bucket{service="kong.command.80",route="r",route="r",le="2"} 1`,
		"count after a known series":     `kong_upstream_latency_ms_count{service="kong.command.80",route="r",workspace="default",workspace="x"} 1`,
		"slow path (escaped value)":      `kong_http_requests_total{service="kong.command.80",route="a\\b",code="200",code="200"} 1`,
		"upstream twice":                 `kong_upstream_target_health{upstream="echo",upstream="echo",target="t",address="a",state="healthy",subsystem="http"} 1`,
		"more labels than the fast path": `kong_http_requests_total{service="kong.command.80",a="1",b="2",c="3",d="4",e="5",f="6",g="7",h="8",i="9",a="10"} 1`,
	}
	rw := New(Selection{
		Services: map[Service]Metrics{command: Latency | StatusCode | UpstreamHealth},
		Mappings: map[string]Service{"echo": command},
	})
	for name, dup := range tests {
		t.Run(name, func(t *testing.T) {
			for pass := range 2 { // the second with the targets and next links the first remembered
				page := strings.Join([]string{good, bucket, dup, good, bucket}, "\n") + "\n"
				out, stats := rewriteAll(rw, []byte(page))
				if stats.Dropped[DropMalformed] != 1 || stats.Kept != 4 {
					t.Errorf("pass %d: kept %d, dropped %d as malformed; want 4 and 1", pass, stats.Kept, stats.Dropped[DropMalformed])
				}
				parser := expfmt.NewTextParser(model.UTF8Validation)
				if _, err := parser.TextToMetricFamilies(bytes.NewReader(out)); err != nil {
					t.Errorf("pass %d: the output does not parse: %v\n%s", pass, err, out)
				}
			}
		})
	}
}
