package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// readCase reads the two pages of testdata/<name>, as demo -pages wrote
// them from the Kong simulator and the sidecar.
func readCase(t *testing.T, dir string) pages {
	t.Helper()
	kong, err := os.ReadFile(filepath.Join(dir, "kong.prom"))
	if err != nil {
		t.Fatal(err)
	}
	side, err := os.ReadFile(filepath.Join(dir, "sidecar.prom"))
	if err != nil {
		t.Fatal(err)
	}
	return pages{kong: kong, sidecar: side}
}

// TestReport: the report of each case under testdata/ (the tutorial's
// 100 ms, 10 ms at the minimum, 42 ms within the tolerance), against its
// golden file.
func TestReport(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under testdata: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			p := readCase(t, dir)
			if !consistent(p) {
				t.Fatal("the case's pages show different states of Kong")
			}
			var b bytes.Buffer
			if err := writeReport(&b, p); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join(dir, "report.golden"), b.Bytes())
		})
	}
}

// TestReportFails: a sidecar page without Kong's series, or pages from
// different states of Kong, are errors, not a report.
func TestReportFails(t *testing.T) {
	p := readCase(t, filepath.Join("testdata", "tutorial"))
	var kept []string
	for _, line := range strings.Split(string(p.sidecar), "\n") {
		if !strings.HasPrefix(line, "kong_upstream_latency_ms_sum") {
			kept = append(kept, line)
		}
	}
	missing := pages{kong: p.kong, sidecar: []byte(strings.Join(kept, "\n"))}
	if err := writeReport(&bytes.Buffer{}, missing); err == nil {
		t.Error("a sidecar page without kong_upstream_latency_ms_sum: no error")
	}
	if consistent(missing) {
		t.Error("a sidecar page without kong_upstream_latency_ms_sum is consistent with Kong's")
	}
	count := []byte(`kong_upstream_latency_ms_count{service="kong.command.80",route="kong.command.command.api.example.com.80",workspace="default"} 76` + "\n")
	later := pages{kong: bytes.Replace(p.kong, count, bytes.Replace(count, []byte(" 76"), []byte(" 77"), 1), 1), sidecar: p.sidecar}
	if bytes.Equal(later.kong, p.kong) {
		t.Fatal("the tutorial case has no count of 76 to change")
	}
	if consistent(later) {
		t.Error("Kong's page one request later is consistent with the sidecar's")
	}
	if err := writeReport(&bytes.Buffer{}, pages{kong: []byte("# nothing\n"), sidecar: p.sidecar}); err == nil {
		t.Error("a Kong page without the tutorial's series: no error")
	}
}

// TestHPADecision: the HPA controller's rule for a Value target from other
// replica counts than the demo's one.
func TestHPADecision(t *testing.T) {
	for _, tt := range []struct {
		metric   float64
		replicas int
		want     string
	}{
		{100, 1, "from 1 to 3 replicas"},
		{100, 5, "from 5 to 10 replicas"}, // 12.5 capped at maxReplicas
		{20, 4, "from 4 down to 2"},
		{43.9, 3, "within the HPA's 10% tolerance"},
		{36.1, 3, "within the HPA's 10% tolerance"},
		{35, 1, "at its minimum of 1"},
	} {
		if got := hpaDecision(tt.metric, tt.replicas); !strings.Contains(got, tt.want) {
			t.Errorf("hpaDecision(%g, %d) = %q, want %q in it", tt.metric, tt.replicas, got, tt.want)
		}
	}
}

// TestHPAConstantsMatchTheTutorial keeps the demo's target and bounds equal
// to the tutorial's HPA as the repository ships it.
func TestHPAConstantsMatchTheTutorial(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "manifests", "examples", "hpa.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hpa struct {
		Spec struct {
			MinReplicas int `json:"minReplicas"`
			MaxReplicas int `json:"maxReplicas"`
			Metrics     []struct {
				Object struct {
					Metric struct{ Name string } `json:"metric"`
					Target struct {
						Type  string `json:"type"`
						Value string `json:"value"`
					} `json:"target"`
				} `json:"object"`
			} `json:"metrics"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &hpa); err != nil {
		t.Fatal(err)
	}
	if hpa.Spec.MinReplicas != hpaMinReplicas || hpa.Spec.MaxReplicas != hpaMaxReplicas {
		t.Errorf("hpa.yaml scales %d..%d, the demo %d..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, hpaMinReplicas, hpaMaxReplicas)
	}
	if len(hpa.Spec.Metrics) != 1 {
		t.Fatalf("hpa.yaml has %d metrics, the demo reads one", len(hpa.Spec.Metrics))
	}
	o := hpa.Spec.Metrics[0].Object
	if o.Metric.Name != averageMetric || o.Target.Type != "Value" || o.Target.Value != num(hpaTarget) {
		t.Errorf("hpa.yaml's metric is %s, %s %s; the demo's %s, Value %s", o.Metric.Name, o.Target.Type, o.Target.Value, averageMetric, num(hpaTarget))
	}
}
