package test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// sidecarPort is the sidecar's listen port: the port of
// SIDECAR_LISTEN_ADDR's default, which the injector does not change.
func sidecarPort(t *testing.T) int32 {
	t.Helper()
	return listenPort(t, variables(t, "kong-metrics-sidecar")["SIDECAR_LISTEN_ADDR"])
}

// optedInPod is the labels of a Kong pod that opted in, in namespace kong.
var optedInPod = map[string]string{labelInject: "true", "app": "kong"}

// TestServiceMonitor: the Service selects the opted-in pods and exposes the
// sidecar's port as sidecar-metrics; the ServiceMonitor scrapes it.
func TestServiceMonitor(t *testing.T) {
	objs := render(t, "monitoring/servicemonitor")
	services := all[corev1.Service](objs)
	monitors := all[monitoringv1.ServiceMonitor](objs)
	if len(services) != 1 || len(monitors) != 1 {
		t.Fatalf("%d Services and %d ServiceMonitors, want one each", len(services), len(monitors))
	}
	svc, sm := services[0], monitors[0]

	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, optedInPod) ||
		selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, map[string]string{"app": "kong"}) {
		t.Errorf("Service selector %v, want the pods labelled %s: \"true\" only", svc.Spec.Selector, labelInject)
	}
	port := sidecarPort(t)
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == sidecarPortName {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		t.Fatalf("Service has no port named %s: %+v", sidecarPortName, svc.Spec.Ports)
	}
	// A number: a named port of a native sidecar (an init container) does
	// not resolve before Kubernetes 1.32.
	if sp.TargetPort != intstr.FromInt32(port) || sp.Port != port {
		t.Errorf("Service port %d → %s, want %d → %d", sp.Port, sp.TargetPort.String(), port, port)
	}

	if !selects(t, &sm.Spec.Selector, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", sm.Spec.Selector, svc.Labels)
	}
	if !sm.Spec.NamespaceSelector.Any && !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, svc.Namespace) && sm.Namespace != svc.Namespace {
		t.Errorf("ServiceMonitor in %s with namespaceSelector %+v does not see namespace %s", sm.Namespace, sm.Spec.NamespaceSelector, svc.Namespace)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v, want one", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != sidecarPortName || ep.Path != "/metrics" || ep.Scheme.String() != "http" {
		t.Errorf("ServiceMonitor endpoint %s %s on port %q, want http /metrics on %s", ep.Scheme.String(), ep.Path, ep.Port, sidecarPortName)
	}
	checkHonorLabelsNote(t, "monitoring/servicemonitor/servicemonitor.yaml")
}

// TestPodMonitor: the alternative selects the opted-in pods and scrapes the
// container port named sidecar-metrics.
func TestPodMonitor(t *testing.T) {
	objs := render(t, "monitoring/podmonitor")
	monitors := all[monitoringv1.PodMonitor](objs)
	if len(monitors) != 1 || len(objs) != 1 {
		t.Fatalf("%d objects, %d PodMonitors; want just one PodMonitor", len(objs), len(monitors))
	}
	pm := monitors[0]
	if !selects(t, &pm.Spec.Selector, optedInPod) || selects(t, &pm.Spec.Selector, map[string]string{"app": "kong"}) {
		t.Errorf("PodMonitor selector %v, want the pods labelled %s: \"true\" only", pm.Spec.Selector, labelInject)
	}
	if !pm.Spec.NamespaceSelector.Any && !slices.Contains(pm.Spec.NamespaceSelector.MatchNames, "kong") {
		t.Errorf("PodMonitor namespaceSelector %+v does not see namespace kong", pm.Spec.NamespaceSelector)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor endpoints %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port == nil || *ep.Port != sidecarPortName || ep.Path != "/metrics" || ep.Scheme.String() != "http" {
		t.Errorf("PodMonitor endpoint %s %s on port %v, want http /metrics on %s", ep.Scheme.String(), ep.Path, deref(ep.Port), sidecarPortName)
	}
	checkHonorLabelsNote(t, "monitoring/podmonitor/podmonitor.yaml")
}

// checkHonorLabelsNote: the file says that either honorLabels works.
func checkHonorLabelsNote(t *testing.T, path string) {
	t.Helper()
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(readManifest(t, path)), "#", " ")), " ")
	if !strings.Contains(text, "honorLabels may be false (the default) or true") {
		t.Errorf("%s lacks the note that honorLabels may be false or true", path)
	}
}

// TestAdapterValues: the prometheus-adapter values are the tutorial's,
// byte for byte, and decode strictly as the chart's values.
func TestAdapterValues(t *testing.T) {
	const path = "monitoring/prometheus-adapter/values.yaml"
	data := readManifest(t, path)
	body := stripHeader(data)
	if string(body) != tutorialAdapterValues {
		t.Errorf("%s (after its comment header) differs from the tutorial's values.yaml:\n%s", path, body)
	}
	if !bytes.Contains(data, []byte(tutorialAdapterRules)) {
		t.Errorf("%s does not hold the tutorial's rules byte for byte", path)
	}
	if !bytes.Contains(data, []byte("honorLabels")) {
		t.Errorf("%s lacks the note on honorLabels", path)
	}
	var v adapterValues
	if err := decodeStrict(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if v.Rules.Default || len(v.Rules.Custom) != 1 {
		t.Fatalf("rules %+v, want the one custom rule and no defaults", v.Rules)
	}
	r := v.Rules.Custom[0]
	if r.Name.As != hpaMetric {
		t.Errorf("rule name.as %q, want %q", r.Name.As, hpaMetric)
	}
	// The labels the rule maps to resources are the ones the sidecar adds.
	for label, resource := range map[string]string{"exported_namespace": "namespace", "exported_service": "service"} {
		if o, ok := r.Resources.Overrides[label]; !ok || o.Resource != resource {
			t.Errorf("override for %s = %+v, want resource %s", label, o, resource)
		}
	}
}
