package doctor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// loadCase is testdata/whole.json (the answers of the tutorial's whole
// chain) with testdata/cases/<name>.json merged in (RFC 7386: the fields
// a case changes).
func loadCase(t *testing.T, name string) *Answers {
	t.Helper()
	base, err := os.ReadFile(filepath.Join("testdata", "whole.json"))
	if err != nil {
		t.Fatal(err)
	}
	patch, err := os.ReadFile(filepath.Join("testdata", "cases", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := jsonpatch.MergePatch(base, patch)
	if err != nil {
		t.Fatalf("merging %s: %v", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	var a Answers
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return &a
}

// TestDiagnose runs the chain on each recorded case: the broken link it
// must name ("" for a whole chain), the links that must be idle, and the
// whole text report as a golden file.
func TestDiagnose(t *testing.T) {
	tests := []struct {
		name   string
		broken string
		idle   []string
		// says is a phrase the broken (or idle) link's text must hold.
		says string
	}{
		{"whole", "", nil, "the chain is whole"},
		{"idle", "", []string{LinkKongPlugin, LinkResolution, LinkSeries, LinkCustomMetrics}, "at its minimum because there is no traffic"},
		{"idle-other-services", "", []string{LinkResolution, LinkSeries, LinkCustomMetrics}, `"kong.billing.80" → kong/billing`},
		{"extension-missing", LinkExtension, nil, "does not exist"},
		{"extension-invalid", LinkExtension, nil, "config.yaml is invalid"},
		{"extension-not-selecting", LinkExtension, nil, "selects kong/not-command, not kong/command"},
		{"opt-in-missing", LinkOptIn, nil, "kong-6d4f9c7b8-9hv4m lack the label"},
		{"injector-down", LinkInjection, nil, "has no ready endpoint"},
		{"injector-skipped", LinkInjection, nil, "no Kong container with a status listener"},
		{"injector-probe-down", LinkInjection, nil, "The injector is down or unreachable"},
		{"injector-probe-skipped", LinkInjection, nil, "a dry run of kong-6d4f9c7b8-w8c5d warns: kong-metrics-sidecar not injected"},
		{"injector-probe-injected", LinkInjection, nil, "is injected now"},
		{"sidecar-kong-down", LinkSidecar, nil, `upstream_up 0; errors reason="connect"`},
		{"sidecar-config-rejected", LinkSidecar, nil, "rejected the extension file"},
		{"sidecar-unreachable", LinkSidecar, nil, "connection refused"},
		{"latency-off", LinkKongPlugin, nil, "latency_metrics is off"},
		{"unresolved", LinkResolution, nil, `"httproute.kong.command.0" (route_rule`},
		{"monitor-selector", LinkMonitor, nil, "no Service in kong has those labels"},
		{"monitor-not-selected", LinkMonitor, nil, "no Prometheus resource selects it"},
		{"monitor-port", LinkMonitor, nil, "none of its endpoints' ports [metrics]"},
		{"monitor-none", LinkMonitor, nil, "no ServiceMonitor or PodMonitor covers namespace kong"},
		{"podmonitor", "", nil, "PodMonitor kong/kong-metrics-sidecar (through the pods"},
		{"prometheus-down", LinkPrometheus, nil, "does not answer"},
		{"prometheus-none", LinkPrometheus, nil, "no Prometheus found"},
		{"target-down", LinkPrometheus, nil, "is down: Get"},
		{"target-missing", LinkPrometheus, nil, "no target of kong-6d4f9c7b8-tq2lz"},
		{"series-unlabelled", LinkSeries, nil, "without exported_service, from job(s) kong-proxy"},
		{"series-dropped", LinkSeries, nil, "Prometheus has none"},
		{"apiservice-missing", LinkCustomMetrics, nil, "does not exist"},
		{"apiservice-unavailable", LinkCustomMetrics, nil, "is not Available (FailedDiscoveryCheck"},
		{"adapter-rule-missing", LinkCustomMetrics, nil, "serves no metric of Services"},
		{"metric-404", LinkCustomMetrics, nil, "no value for Service kong/command"},
		{"hpa-wrong-metric", LinkHPA, nil, `asks for metric "kong_upstream_latency_ms_average"`},
		{"hpa-scaling-inactive", LinkHPA, nil, "ScalingActive False, FailedGetObjectMetric"},
		{"hpa-none", LinkHPA, nil, "no HorizontalPodAutoscaler"},
		// At its minimum with traffic: the latency is below target, not idle.
		{"hpa-at-min", "", nil, "(desired 1, 1..10), ScalingActive True\n"},
		{"scaledobject", "", nil, "Ready and Active"},
		// service/command where only KEDA scales on it: the chain ends in KEDA.
		{"service-scaled-by-keda", "", nil, "ok        scaledobject   ScaledObject command Ready and Active"},
		{"scaledobject-not-ready", LinkScaledObject, nil, "is not Ready (TriggerError"},
		{"scaledobject-inactive", "", nil, "Idle, not a fault"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			r := Diagnose(loadCase(t, tt.name))
			var text bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", tt.name+".txt"), text.Bytes())

			b, isBroken := r.Broken()
			if got := map[bool]string{true: b.Name}[isBroken]; got != tt.broken {
				t.Fatalf("broken link %q, want %q:\n%s", got, tt.broken, text.String())
			}
			if want := map[bool]int{true: 1}[tt.broken != ""]; r.ExitCode() != want {
				t.Errorf("exit code %d, want %d", r.ExitCode(), want)
			}
			var idle []string
			for _, l := range r.Links {
				if l.Status == Idle {
					idle = append(idle, l.Name)
				}
				if l.Status == Broken && l.Fix == "" {
					t.Errorf("broken link %s has no fix", l.Name)
				}
			}
			if !slices.Equal(idle, tt.idle) {
				t.Errorf("idle links %v, want %v", idle, tt.idle)
			}
			if !strings.Contains(text.String(), tt.says) {
				t.Errorf("the report does not say %q:\n%s", tt.says, text.String())
			}
			// After the broken link, nothing is judged.
			after := false
			for _, l := range r.Links {
				if after && l.Status != Unchecked {
					t.Errorf("link %s after the broken %s is %s, want unchecked", l.Name, tt.broken, l.Status)
				}
				after = after || l.Status == Broken
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !seen[name] {
			t.Errorf("case %s has no entry in the table", name)
		}
	}
}

// TestReportJSON pins -o json's shape on one broken case.
func TestReportJSON(t *testing.T) {
	var out bytes.Buffer
	if err := Diagnose(loadCase(t, "prometheus-down")).WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "golden", "prometheus-down.json"), out.Bytes())
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{"service/command": "service command", "svc/command": "service command", "hpa/command": "hpa command",
		"scaledobject/command": "scaledobject command", "so/x": "scaledobject x"} {
		kind, name, err := ParseTarget(in)
		if err != nil || kind+" "+name != want {
			t.Errorf("ParseTarget(%q) = %q %q %v, want %s", in, kind, name, err, want)
		}
	}
	for _, in := range []string{"command", "pod/command", "service/", "service/a/b", ""} {
		if _, _, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q): no error", in)
		}
	}
}
