package e2e_test

import (
	"bytes"
	"compress/gzip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An excerpt of what Prometheus Operator v0.85 writes for the shipped
// ServiceMonitor and a Prometheus of two replicas.
const operatorConfig = `global:
  evaluation_interval: 30s
  scrape_interval: 30s
  external_labels:
    prometheus: prometheus/prometheus-kube-prometheus-prometheus
    prometheus_replica: $(POD_NAME)
scrape_configs:
- job_name: serviceMonitor/kong/kong-metrics-sidecar/0
  honor_labels: false
  kubernetes_sd_configs:
  - role: endpoints
    namespaces:
      names:
      - kong
  scrape_interval: 15s
  metrics_path: /metrics
  relabel_configs:
  - source_labels: [__tmp_hash]
    target_label: __tmp_hash
    modulus: 1
    action: hashmod
  - source_labels: [__tmp_hash, __tmp_disable_sharding]
    regex: $(SHARD);|.+;.+
    action: keep
  - source_labels: [__meta_kubernetes_service_name]
    target_label: job
    replacement: ${1}
- job_name: static
  static_configs:
  - targets: [localhost:9090]
`

func TestRenderPrometheusConfig(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
		replica           int
		wantSDs           int
	}{
		{name: "servicemonitor", in: operatorConfig, wantSDs: 1},
		// The second replica: its own prometheus_replica.
		{name: "servicemonitor replica 1", in: operatorConfig, replica: 1, wantSDs: 1},
		{name: "unknown variable", in: "global:\n  external_labels:\n    x: $(NODE_NAME)\n", wantErr: "$(NODE_NAME)"},
		{name: "api_server named", in: "scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - role: pod\n    api_server: https://k\n", wantErr: "names an api_server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := renderPrometheusConfig(gzipped(t, tc.in), "/run/prometheus.kubeconfig", promPod(tc.replica))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantSDs {
				t.Errorf("%d kubernetes_sd_configs rewritten, want %d", n, tc.wantSDs)
			}
			golden.Check(t, filepath.Join("testdata", "render", strings.ReplaceAll(tc.name, " ", "-")+".yaml"), got)
		})
	}
}
