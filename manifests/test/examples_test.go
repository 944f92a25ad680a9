package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	exampleNamespace = "kong"
	exampleConfigMap = "kong-metrics-sidecar"
	hpaMetric        = "kong_upstream_latency_ms_60s_average"
)

// TestExampleHPA: the HorizontalPodAutoscaler is the tutorial's, verbatim,
// and scales the example's Deployment on the adapter rule's metric of the
// example's Service.
func TestExampleHPA(t *testing.T) {
	const path = "examples/hpa.yaml"
	if got := stripHeader(readManifest(t, path)); string(got) != tutorialHPA {
		t.Errorf("%s (after its comment header) differs from the tutorial's HorizontalPodAutoscaler:\n%s", path, got)
	}
	var want autoscalingv2.HorizontalPodAutoscaler
	if err := decodeStrict([]byte(tutorialHPA), &want); err != nil {
		t.Fatal(err)
	}
	objs := render(t, "examples")
	hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, objs, "command")
	if !reflect.DeepEqual(*hpa, want) {
		got, _ := yaml.Marshal(hpa)
		wantYAML, _ := yaml.Marshal(want)
		t.Errorf("rendered HorizontalPodAutoscaler:\n%s\nwant the tutorial's:\n%s", got, wantYAML)
	}

	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" {
		t.Fatalf("scaleTargetRef %+v, want a Deployment", ref)
	}
	find[appsv1.Deployment](t, objs, ref.Name)
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Object == nil {
		t.Fatalf("metrics %+v, want one Object metric", hpa.Spec.Metrics)
	}
	m := hpa.Spec.Metrics[0].Object
	if m.DescribedObject.APIVersion != "v1" || m.DescribedObject.Kind != "Service" {
		t.Fatalf("describedObject %+v, want a Service", m.DescribedObject)
	}
	find[corev1.Service](t, objs, m.DescribedObject.Name)
	if m.Metric.Name != hpaMetric {
		t.Errorf("metric %q, want the adapter rule's %q", m.Metric.Name, hpaMetric)
	}
}

// TestExampleConfigMap: the sidecar's ConfigMap holds the tutorial's
// DataPlaneMetricsExtension under config.yaml, and the sidecar accepts it.
func TestExampleConfigMap(t *testing.T) {
	if got := string(readManifest(t, "examples/dataplanemetricsextension.yaml")); got != tutorialExtension {
		t.Errorf("examples/dataplanemetricsextension.yaml differs from the tutorial's DataPlaneMetricsExtension:\n%s", got)
	}
	objs := render(t, "examples")
	cm := find[corev1.ConfigMap](t, objs, exampleConfigMap)
	if cm.Namespace != exampleNamespace {
		t.Errorf("ConfigMap namespace %q, want %q, where the tutorial's Kong pods run", cm.Namespace, exampleNamespace)
	}
	if len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
		t.Errorf("ConfigMap keys %v, want %s only", keys(cm.Data), configKey)
	}
	content, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap has no key %s", configKey)
	}
	if content != tutorialExtension {
		t.Errorf("ConfigMap %s differs from the tutorial's DataPlaneMetricsExtension:\n%s", configKey, content)
	}
	out := checkConfig(t, content)
	if !strings.Contains(out, "selects Service kong/command: latency") {
		t.Errorf("kong-metrics-sidecar -check-config: want it to select kong/command for latency:\n%s", out)
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestExampleKongPlugin: Kong's prometheus plugin with latency metrics,
// attached to the command Service.
func TestExampleKongPlugin(t *testing.T) {
	objs := render(t, "examples")
	plugins := all[kongPlugin](objs)
	if len(plugins) != 1 {
		t.Fatalf("%d KongPlugins, want 1", len(plugins))
	}
	p := plugins[0]
	if p.Plugin != "prometheus" || p.Disabled {
		t.Errorf("KongPlugin plugin %q disabled %v, want prometheus enabled", p.Plugin, p.Disabled)
	}
	var config map[string]any
	if err := json.Unmarshal(p.Config.Raw, &config); err != nil {
		t.Fatal(err)
	}
	if config["latency_metrics"] != true {
		t.Errorf("KongPlugin config %v, want latency_metrics: true", config)
	}
	svc := find[corev1.Service](t, objs, "command")
	if p.Namespace != svc.Namespace {
		t.Errorf("KongPlugin in namespace %q, Service in %q; a KongPlugin applies to its own namespace", p.Namespace, svc.Namespace)
	}
	attached := strings.Split(svc.Annotations["konghq.com/plugins"], ",")
	for i := range attached {
		attached[i] = strings.TrimSpace(attached[i])
	}
	if !slices.Contains(attached, p.Name) {
		t.Errorf("Service command's konghq.com/plugins %q does not name KongPlugin %q", svc.Annotations["konghq.com/plugins"], p.Name)
	}
}

// TestExampleCommand: the tutorial's command Service reaches its
// Deployment's pods, in namespace kong.
func TestExampleCommand(t *testing.T) {
	objs := render(t, "examples")
	for _, o := range objs {
		if o.namespace != exampleNamespace {
			t.Errorf("%s %s in namespace %q, want %q", o.gvk.Kind, o.name, o.namespace, exampleNamespace)
		}
	}
	svc := find[corev1.Service](t, objs, "command")
	d := find[appsv1.Deployment](t, objs, "command")
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the Deployment's pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Service ports %+v, containers %d; want port 80 and one container", svc.Spec.Ports, len(d.Spec.Template.Spec.Containers))
	}
	c := &d.Spec.Template.Spec.Containers[0]
	if p := containerPort(t, c, svc.Spec.Ports[0].TargetPort); p != 8080 {
		t.Errorf("Service port 80 reaches container port %d, want 8080", p)
	}
}

// TestOptInSnippets: every snippet under examples/opt-in decodes strictly
// and puts the opt-in label where its tool takes pod labels.
func TestOptInSnippets(t *testing.T) {
	const dir = "examples/opt-in"
	podTemplate := func(t *testing.T, tmpl *corev1.PodTemplateSpec) map[string]string {
		t.Helper()
		if tmpl == nil {
			t.Fatal("no podTemplateSpec")
		}
		if !slices.ContainsFunc(tmpl.Spec.Containers, func(c corev1.Container) bool { return c.Name == "proxy" }) {
			t.Errorf("pod template has no container named proxy (Kong's)")
		}
		if cm, ok := tmpl.Annotations[annotationConfig]; ok && cm != exampleConfigMap {
			t.Errorf("annotation %s=%q, want the example's ConfigMap %q", annotationConfig, cm, exampleConfigMap)
		}
		return tmpl.Labels
	}
	snippets := map[string]func(t *testing.T, data []byte) map[string]string{
		"dataplane.yaml": func(t *testing.T, data []byte) map[string]string {
			v, err := decodeObject(data)
			if err != nil {
				t.Fatal(err)
			}
			dp, ok := v.(*dataPlane)
			if !ok {
				t.Fatalf("a %T, want a DataPlane", v)
			}
			return podTemplate(t, dp.Spec.Deployment.PodTemplateSpec)
		},
		"gatewayconfiguration.yaml": func(t *testing.T, data []byte) map[string]string {
			v, err := decodeObject(data)
			if err != nil {
				t.Fatal(err)
			}
			gc, ok := v.(*gatewayConfiguration)
			if !ok {
				t.Fatalf("a %T, want a GatewayConfiguration", v)
			}
			if gc.Namespace != exampleNamespace {
				t.Errorf("namespace %q, want the tutorial's %q", gc.Namespace, exampleNamespace)
			}
			return podTemplate(t, gc.Spec.DataPlaneOptions.Deployment.PodTemplateSpec)
		},
		"helm-values-kong.yaml": func(t *testing.T, data []byte) map[string]string {
			var v kongHelmValues
			if err := decodeStrict(data, &v); err != nil {
				t.Fatal(err)
			}
			return v.PodLabels
		},
		"helm-values-ingress.yaml": func(t *testing.T, data []byte) map[string]string {
			var v ingressHelmValues
			if err := decodeStrict(data, &v); err != nil {
				t.Fatal(err)
			}
			return v.Gateway.PodLabels
		},
	}
	files, err := filepath.Glob(filepath.Join(manifestsDir, dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for name := range snippets {
		if !slices.Contains(names, name) {
			t.Errorf("%s/%s is missing", dir, name)
		}
	}
	for _, name := range names {
		check, ok := snippets[name]
		if !ok {
			t.Errorf("%s/%s: no check for it in TestOptInSnippets", dir, name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(manifestsDir, dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := check(t, data); got[labelInject] != "true" {
				t.Errorf("pod labels %v, want %s: \"true\"", got, labelInject)
			}
		})
	}
}
