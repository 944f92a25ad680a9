//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// TestKongPageWithPrometheus: a real Prometheus scrapes the sidecar twice
// per interval, as the sidecar's ServiceMonitor (/metrics) and as Kong's
// own (/metrics/kong, honor_labels so Kong's service label stays); Kong is
// fetched about once per interval for both, Kong's families arrive under
// the second job with Kong's labels, and a query without a job matcher
// sees the enriched copy too.
func TestKongPageWithPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kong := startCountedKong(t)
	// Both jobs scrape every second, at offsets of their own: a fetch
	// answers every scrape within 900 ms of its start.
	addr := startSidecarFor(t, kong.url, "900ms")
	prom, err := harness.StartPrometheus(ctx, t.TempDir(), fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
- job_name: kong-metrics-sidecar
  metrics_path: /metrics
  static_configs:
  - targets: [%[1]q]
    labels: {service: kong-metrics-sidecar}
- job_name: kong-page
  honor_labels: true
  metrics_path: /metrics/kong
  static_configs:
  - targets: [%[1]q]
    labels: {service: kong-proxy}
`, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("prometheus output:\n%s", prom.Output())
		}
	})

	scrapes := func() (sidecar, page float64) {
		t.Helper()
		for job, v := range map[string]*float64{"kong-metrics-sidecar": &sidecar, "kong-page": &page} {
			res, err := prom.Query(ctx, fmt.Sprintf(`sum(count_over_time(up{job=%q}[1h]))`, job))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) == 1 {
				*v = res[0].Value
			}
		}
		return sidecar, page
	}
	deadline := time.Now().Add(100 * time.Second)
	for {
		if s, p := scrapes(); s >= 10 && p >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Prometheus did not scrape both jobs ten times in time")
		}
		time.Sleep(time.Second)
	}
	s0, p0 := scrapes()
	fetches := kong.fetches.Load()
	s1, p1 := scrapes()
	// Fetches start at least 900 ms apart (one more for the first page
	// request), and each job scrapes once a second: about one fetch per
	// second for both, where scraping Kong directly as well would cost two.
	if most := max(s1, p1); float64(fetches) > most*1.2+3 || float64(fetches) >= min(s0, p0)*2 {
		t.Errorf("%d fetches of Kong for %v scrapes of /metrics and %v of /metrics/kong; want about one per interval for both", fetches, s0, p0)
	}
	t.Logf("%d fetches of Kong for %v + %v scrapes", fetches, s0, p0)

	// Kong's page under its job: Kong's service label, as dashboard 7424
	// groups by it, and the simulator's value.
	res, err := prom.Query(ctx, `sum by (service, code) (kong_http_requests_total{job="kong-page"})`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, s := range res {
		got[s.Metric["service"]+" "+s.Metric["code"]] = s.Value
	}
	if len(got) != 2 || got["kong.command.80 200"] != 40 || got["kong.command.80 404"] != 3 {
		t.Errorf("kong_http_requests_total under job kong-page by service and code: %v, want kong.command.80 with 40 200s and 3 404s", got)
	}
	// Without a job matcher the enriched copy of a family counts as well.
	res, err = prom.Query(ctx, `count by (job) (kong_upstream_latency_ms_count)`)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]float64{}
	for _, s := range res {
		jobs[s.Metric["job"]] = s.Value
	}
	if len(jobs) != 2 || jobs["kong-page"] != 1 || jobs["kong-metrics-sidecar"] != 1 {
		t.Errorf("kong_upstream_latency_ms_count by job: %v, want one series under each job", jobs)
	}
}
