package test

import (
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// The chart's kongPageMonitor: rendered against its golden file, and the
// same object as manifests/monitoring/kong-page/podmonitor.
func init() {
	renderCases = append(renderCases, renderCase{
		name:        "kong-page-monitor",
		values:      "kongNamespaces: [kong, edge]\nkongPageMonitor:\n  enabled: true\n  interval: 30s\n  relabelings:\n  - targetLabel: cluster\n    replacement: eu-1\n",
		apiVersions: []string{monitoringAPI},
		check: func(t *testing.T, r rendering) {
			for _, ns := range []string{"kong", "edge"} {
				pm := find[monitoringv1.PodMonitor](t, r.objs, ns, "kong-page")
				if len(pm.Spec.PodMetricsEndpoints) != 1 {
					t.Fatalf("%s: endpoints %+v, want one", ns, pm.Spec.PodMetricsEndpoints)
				}
				ep := pm.Spec.PodMetricsEndpoints[0]
				if ep.Port == nil || *ep.Port != "sidecar-metrics" || ep.Path != "/metrics/kong" || !ep.HonorLabels || ep.Interval != "30s" {
					t.Errorf("%s: endpoint port %v path %q honorLabels %v interval %q, want sidecar-metrics /metrics/kong true 30s", ns, ep.Port, ep.Path, ep.HonorLabels, ep.Interval)
				}
				// The job first, the values' relabelings after it.
				if rs := ep.RelabelConfigs; len(rs) != 2 || rs[0].TargetLabel != "job" || rs[0].Replacement == nil || *rs[0].Replacement != "kong-page" || rs[1].TargetLabel != "cluster" {
					t.Errorf("%s: relabelings %+v, want job=kong-page then the values' own", ns, rs)
				}
			}
			wantNoObjects[monitoringv1.ServiceMonitor](t, r)
		},
	}, renderCase{
		name:   "kong-page-monitor-without-crds",
		values: "kongPageMonitor:\n  enabled: true\n",
		check: func(t *testing.T, r rendering) {
			wantNoObjects[monitoringv1.PodMonitor](t, r)
		},
	})
	sourceOfTruthCases = append(sourceOfTruthCases, struct {
		dir                string
		values, valuesFile string
		apiVersions        []string
		chart, kustomize   func(object) bool
	}{
		dir:         "monitoring/kong-page/podmonitor",
		values:      "kongPageMonitor:\n  enabled: true\n  labels:\n    release: prometheus\n",
		apiVersions: []string{monitoringAPI},
		chart:       inNamespace("kong"),
	})
}
