package test

import (
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
)

// kongPagePath is where the sidecar serves Kong's page (proxy.KongPagePath).
const kongPagePath = "/metrics/kong"

// TestKongPagePodMonitor: the PodMonitor for Kong's page scrapes the same
// pods and port as the sidecar's own, at the same interval, keeping Kong's
// labels (honorLabels), under the job kong-page.
func TestKongPagePodMonitor(t *testing.T) {
	objs := render(t, "monitoring/kong-page/podmonitor")
	monitors := all[monitoringv1.PodMonitor](objs)
	if len(monitors) != 1 || len(objs) != 1 {
		t.Fatalf("%d objects, %d PodMonitors; want just one PodMonitor", len(objs), len(monitors))
	}
	pm := monitors[0]
	sidecar := all[monitoringv1.PodMonitor](render(t, "monitoring/podmonitor"))[0]
	if pm.Namespace+"/"+pm.Name == sidecar.Namespace+"/"+sidecar.Name {
		t.Errorf("PodMonitor %s/%s has the sidecar's PodMonitor's name, and so its job", pm.Namespace, pm.Name)
	}
	if !selects(t, &pm.Spec.Selector, optedInPod) || selects(t, &pm.Spec.Selector, map[string]string{"app": "kong"}) {
		t.Errorf("PodMonitor selector %v, want the pods labelled %s: \"true\" only", pm.Spec.Selector, labelInject)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor endpoints %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep, theirs := pm.Spec.PodMetricsEndpoints[0], sidecar.Spec.PodMetricsEndpoints[0]
	if ep.Port == nil || *ep.Port != sidecarPortName || ep.Path != kongPagePath || ep.Scheme.String() != "http" {
		t.Errorf("endpoint %s %s on port %v, want http %s on %s", ep.Scheme.String(), ep.Path, deref(ep.Port), kongPagePath, sidecarPortName)
	}
	if !ep.HonorLabels {
		t.Errorf("honorLabels %v, want true: Kong's service label must stay service", ep.HonorLabels)
	}
	if ep.Interval != theirs.Interval {
		t.Errorf("interval %s, the sidecar's PodMonitor's %s: want the same, so that one fetch answers both", ep.Interval, theirs.Interval)
	}
	if job := relabeledJob(ep.RelabelConfigs); job != kongPageJob {
		t.Errorf("job %q from the relabelings %+v, want %s", job, ep.RelabelConfigs, kongPageJob)
	}
	checkKongPageNotes(t, "monitoring/kong-page/podmonitor/podmonitor.yaml")
}

// TestKongPageServiceMonitor: the ServiceMonitor for Kong's page scrapes
// the sidecar's headless Service on its port, at the sidecar's
// ServiceMonitor's interval, keeping Kong's labels, with the job set apart
// from the sidecar's (which is the Service's name).
func TestKongPageServiceMonitor(t *testing.T) {
	objs := render(t, "monitoring/kong-page/servicemonitor")
	monitors := all[monitoringv1.ServiceMonitor](objs)
	if len(monitors) != 1 || len(objs) != 1 {
		t.Fatalf("%d objects, %d ServiceMonitors; want just one ServiceMonitor", len(objs), len(monitors))
	}
	sm := monitors[0]
	sidecarObjs := render(t, "monitoring/servicemonitor")
	svc := all[corev1.Service](sidecarObjs)[0]
	theirs := all[monitoringv1.ServiceMonitor](sidecarObjs)[0]
	if sm.Namespace+"/"+sm.Name == theirs.Namespace+"/"+theirs.Name {
		t.Errorf("ServiceMonitor %s/%s has the sidecar's ServiceMonitor's name", sm.Namespace, sm.Name)
	}
	if !selects(t, &sm.Spec.Selector, svc.Labels) || sm.Namespace != svc.Namespace {
		t.Errorf("ServiceMonitor %s/%s with selector %v does not select Service %s/%s (labels %v)", sm.Namespace, sm.Name, sm.Spec.Selector, svc.Namespace, svc.Name, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v, want one", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != sidecarPortName || ep.Path != kongPagePath || ep.Scheme.String() != "http" {
		t.Errorf("endpoint %s %s on port %q, want http %s on %s", ep.Scheme.String(), ep.Path, ep.Port, kongPagePath, sidecarPortName)
	}
	if !ep.HonorLabels {
		t.Errorf("honorLabels %v, want true: Kong's service label must stay service, not become exported_service", ep.HonorLabels)
	}
	if ep.Interval != theirs.Spec.Endpoints[0].Interval {
		t.Errorf("interval %s, the sidecar's ServiceMonitor's %s: want the same, so that one fetch answers both", ep.Interval, theirs.Spec.Endpoints[0].Interval)
	}
	// The Prometheus Operator makes the Service's name the job of both
	// monitors; a relabeling sets this one apart.
	if job := relabeledJob(ep.RelabelConfigs); job != kongPageJob || job == svc.Name {
		t.Errorf("job %q from the relabelings %+v, want %s, not the Service's name %s", job, ep.RelabelConfigs, kongPageJob, svc.Name)
	}
	checkKongPageNotes(t, "monitoring/kong-page/servicemonitor/servicemonitor.yaml")
}

// kongPageJob is the job both monitors of Kong's page give their targets,
// which docs/kong-dashboard.md's queries match.
const kongPageJob = "kong-page"

// relabeledJob is the job that relabelings set to a constant, or "".
func relabeledJob(rs []monitoringv1.RelabelConfig) string {
	job := ""
	for _, r := range rs {
		if r.TargetLabel == "job" && len(r.SourceLabels) == 0 && (r.Action == "" || strings.EqualFold(r.Action, "replace")) && r.Replacement != nil {
			job = *r.Replacement
		}
	}
	return job
}

// checkKongPageNotes: the file says why honorLabels is true and why Kong's
// status port must not be scraped as well.
func checkKongPageNotes(t *testing.T, path string) {
	t.Helper()
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(readManifest(t, path)), "#", " ")), " ")
	for _, want := range []string{"honorLabels is true so that Kong's service label stays service", "Do not scrape Kong's status port as well"} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks the note %q", path, want)
		}
	}
}
