package test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/config"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/inject"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current renderings")

// tutorialExtension is Kong's tutorial's DataPlaneMetricsExtension as chart
// values.
const tutorialExtension = `
extension:
  enabled: true
  dataPlaneMetricsExtensions:
  - name: kong
    spec:
      serviceSelector:
        matchNames:
        - name: command
      config:
        latency: true
`

// The Grafana dashboard: the file manifests/dashboards ships, the one
// source of the chart's copy, and its key in the ConfigMaps.
var dashboardFile = filepath.Join("..", "..", "manifests", "dashboards", "kong-metrics-sidecar.json")

const dashboardKey = "kong-metrics-sidecar.json"

// renderCase is one set of values the chart is rendered with; its
// rendering must match testdata/<name>.yaml.
type renderCase struct {
	name        string
	values      string
	apiVersions []string
	check       func(t *testing.T, r rendering)
}

var renderCases = []renderCase{
	{
		name: "defaults",
		check: func(t *testing.T, r rendering) {
			in := injectorOf(t, r)
			if got := *in.deployment.Spec.Replicas; got != 2 {
				t.Errorf("replicas %d, want 2", got)
			}
			if got, want := in.container.Image, "ghcr.io/kong-metrics-sidecar/kong-metrics-sidecar:"+appVersion(t); got != want {
				t.Errorf("image %q, want %q (the chart's appVersion)", got, want)
			}
			if got := in.settings.SidecarImage; got != in.container.Image {
				t.Errorf("sidecar image %q, want the injector's %q", got, in.container.Image)
			}
			if in.settings.SidecarMode != inject.ModeNative {
				t.Errorf("sidecar mode %q, want native", in.settings.SidecarMode)
			}
			if s := in.settings; s.SidecarCPURequest != inject.DefaultCPURequest || s.SidecarMemoryRequest != inject.DefaultMemoryRequest ||
				s.SidecarMemoryLimit != inject.DefaultMemoryLimit || s.DefaultStatusPort != inject.DefaultStatusPort {
				t.Errorf("sidecar resources %s %s %s, status port %d; want the injector's defaults", s.SidecarCPURequest, s.SidecarMemoryRequest, s.SidecarMemoryLimit, s.DefaultStatusPort)
			}
			wantNoObjects[cmv1.Certificate](t, r)
			wantNoObjects[monitoringv1.ServiceMonitor](t, r)
			wantNoObjects[monitoringv1.PodMonitor](t, r)
			wantNoObjects[monitoringv1.PrometheusRule](t, r)
			wantNoObjects[corev1.ConfigMap](t, r)
			if in.webhook.Webhooks[0].ClientConfig.CABundle == nil {
				t.Error("no caBundle without cert-manager")
			}
			w := in.webhook.Webhooks[0]
			if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.TimeoutSeconds != 5 {
				t.Errorf("webhook failurePolicy %s, reinvocationPolicy %s, timeoutSeconds %d; want Ignore, IfNeeded, 5", *w.FailurePolicy, *w.ReinvocationPolicy, *w.TimeoutSeconds)
			}
			if got, want := w.NamespaceSelector.MatchExpressions[0].Values, []string{"kube-system", releaseNamespace}; !slices.Equal(got, want) {
				t.Errorf("excluded namespaces %v, want %v", got, want)
			}
			if pdb := find[policyv1.PodDisruptionBudget](t, r.objs, releaseNamespace, in.deployment.Name); pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget minAvailable %v, want 1", pdb.Spec.MinAvailable)
			}
			if len(in.deployment.Spec.Template.Spec.TopologySpreadConstraints) != 2 {
				t.Errorf("topologySpreadConstraints %v, want two (nodes, zones)", in.deployment.Spec.Template.Spec.TopologySpreadConstraints)
			}
			if !strings.Contains(r.notes, "kong-metrics-sidecar.io/inject: \"true\"") {
				t.Errorf("NOTES.txt does not tell the opt-in label:\n%s", r.notes)
			}
		},
	},
	{
		name:   "cert-manager",
		values: "certManager:\n  enabled: true\n",
		check: func(t *testing.T, r rendering) {
			in := injectorOf(t, r)
			if got := len(all[cmv1.Issuer](r.objs)); got != 2 {
				t.Errorf("%d Issuers, want 2 (self-signed, CA)", got)
			}
			cert := find[cmv1.Certificate](t, r.objs, releaseNamespace, in.deployment.Name)
			if got, want := in.webhook.Annotations["cert-manager.io/inject-ca-from"], releaseNamespace+"/"+cert.Name; got != want {
				t.Errorf("inject-ca-from %q, want %q", got, want)
			}
			if in.webhook.Webhooks[0].ClientConfig.CABundle != nil {
				t.Error("a caBundle beside cert-manager's CA injector")
			}
			if len(all[corev1.Secret](r.objs)) != 0 {
				t.Error("Secrets rendered with cert-manager")
			}
			if got := in.deployment.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != cert.Spec.SecretName {
				t.Errorf("the injector mounts Secret %q, the Certificate writes %q", got, cert.Spec.SecretName)
			}
			if got, want := cert.Spec.DNSNames, serviceDNSNames(in.service); !slices.Equal(got, want) {
				t.Errorf("Certificate dnsNames %v, want %v", got, want)
			}
			if !strings.Contains(r.notes, "cert-manager") {
				t.Errorf("NOTES.txt does not mention cert-manager:\n%s", r.notes)
			}
		},
	},
	{
		name:        "service-monitor",
		values:      "serviceMonitor:\n  enabled: true\n  labels:\n    release: prometheus\n",
		apiVersions: []string{monitoringAPI},
		check: func(t *testing.T, r rendering) {
			sm := find[monitoringv1.ServiceMonitor](t, r.objs, "kong", "kong-metrics-sidecar")
			svc := find[corev1.Service](t, r.objs, "kong", "kong-metrics-sidecar")
			if sm.Labels["release"] != "prometheus" {
				t.Errorf("ServiceMonitor labels %v, want release: prometheus", sm.Labels)
			}
			sel, err := labels.ValidatedSelectorFromSet(sm.Spec.Selector.MatchLabels)
			if err != nil || !sel.Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
			}
			if got := svc.Spec.Selector; got["kong-metrics-sidecar.io/inject"] != "true" || len(got) != 1 {
				t.Errorf("Service selector %v, want the opt-in label alone", got)
			}
			ep := sm.Spec.Endpoints[0]
			if ep.Port != svc.Spec.Ports[0].Name || svc.Spec.Ports[0].TargetPort.IntValue() != 9542 {
				t.Errorf("endpoint port %q, Service port %q → %v; want sidecar-metrics → 9542", ep.Port, svc.Spec.Ports[0].Name, svc.Spec.Ports[0].TargetPort)
			}
			if ep.Interval != "15s" || ep.HonorLabels {
				t.Errorf("interval %q honorLabels %v, want 15s false", ep.Interval, ep.HonorLabels)
			}
			wantNoObjects[monitoringv1.PodMonitor](t, r)
		},
	},
	{
		// Without the API and without trustCRDsExist: nothing, and NOTES warns.
		name:   "service-monitor-without-crds",
		values: "serviceMonitor:\n  enabled: true\n",
		check: func(t *testing.T, r rendering) {
			wantNoObjects[monitoringv1.ServiceMonitor](t, r)
			if !strings.Contains(r.notes, "WARNING") {
				t.Errorf("NOTES.txt does not warn that no monitor was created:\n%s", r.notes)
			}
		},
	},
	{
		name:   "service-monitor-trust-crds",
		values: "serviceMonitor:\n  enabled: true\n  trustCRDsExist: true\n",
		check: func(t *testing.T, r rendering) {
			find[monitoringv1.ServiceMonitor](t, r.objs, "kong", "kong-metrics-sidecar")
		},
	},
	{
		name:        "pod-monitor",
		values:      "podMonitor:\n  enabled: true\n  labels:\n    release: prometheus\n",
		apiVersions: []string{monitoringAPI},
		check: func(t *testing.T, r rendering) {
			pm := find[monitoringv1.PodMonitor](t, r.objs, "kong", "kong-metrics-sidecar")
			if pm.Spec.Selector.MatchLabels["kong-metrics-sidecar.io/inject"] != "true" {
				t.Errorf("PodMonitor selector %v, want the opt-in label", pm.Spec.Selector)
			}
			if got := pm.Spec.PodMetricsEndpoints[0].Port; got == nil || *got != "sidecar-metrics" {
				t.Errorf("PodMonitor port %v, want sidecar-metrics", got)
			}
			wantNoObjects[monitoringv1.ServiceMonitor](t, r)
		},
	},
	{
		name: "honor-labels",
		values: `
serviceMonitor:
  enabled: true
  honorLabels: true
  interval: 30s
  scrapeTimeout: 10s
  metricRelabelings:
  - sourceLabels: [__name__]
    regex: go_.*
    action: drop
  relabelings:
  - targetLabel: cluster
    replacement: eu-1
podMonitor:
  enabled: true
  honorLabels: true
`,
		apiVersions: []string{monitoringAPI},
		check: func(t *testing.T, r rendering) {
			ep := find[monitoringv1.ServiceMonitor](t, r.objs, "kong", "kong-metrics-sidecar").Spec.Endpoints[0]
			if !ep.HonorLabels || ep.Interval != "30s" || ep.ScrapeTimeout != "10s" {
				t.Errorf("ServiceMonitor endpoint honorLabels %v interval %q scrapeTimeout %q, want true 30s 10s", ep.HonorLabels, ep.Interval, ep.ScrapeTimeout)
			}
			if len(ep.MetricRelabelConfigs) != 1 || ep.MetricRelabelConfigs[0].Action != "drop" {
				t.Errorf("metricRelabelings %+v", ep.MetricRelabelConfigs)
			}
			if len(ep.RelabelConfigs) != 1 || ep.RelabelConfigs[0].TargetLabel != "cluster" {
				t.Errorf("relabelings %+v", ep.RelabelConfigs)
			}
			if pm := find[monitoringv1.PodMonitor](t, r.objs, "kong", "kong-metrics-sidecar"); !pm.Spec.PodMetricsEndpoints[0].HonorLabels {
				t.Error("PodMonitor honorLabels false, want true")
			}
		},
	},
	{
		name:   "plain-sidecar",
		values: "sidecar:\n  mode: container\n",
		check: func(t *testing.T, r rendering) {
			if in := injectorOf(t, r); in.settings.SidecarMode != inject.ModeContainer {
				t.Errorf("sidecar mode %q, want container", in.settings.SidecarMode)
			}
		},
	},
	{
		// The sidecar's resources and default status port reach the
		// injector's settings; a value left out keeps its default.
		name:   "sidecar-settings",
		values: "sidecar:\n  resources:\n    requests:\n      cpu: 0.25\n      memory: 64Mi\n    limits:\n      memory: 1Gi\n  statusPort: 8200\n  minFetchInterval: 14s\n",
		check: func(t *testing.T, r rendering) {
			s := injectorOf(t, r).settings
			got := [4]string{s.SidecarCPURequest, s.SidecarMemoryRequest, s.SidecarMemoryLimit, strconv.Itoa(int(s.DefaultStatusPort))}
			if want := [4]string{"0.25", "64Mi", "1Gi", "8200"}; got != want {
				t.Errorf("sidecar cpu request, memory request, memory limit, status port %q, want %q", got, want)
			}
			c := s.Config("test")
			if c.SidecarCPURequest.String() != "250m" || c.SidecarMemoryLimit.String() != "1Gi" || c.StatusPort != 8200 || c.MinFetchInterval != 14*time.Second {
				t.Errorf("Mutate's config %+v", c)
			}
		},
	},
	{
		// The Grafana dashboard as a ConfigMap for Grafana's dashboard
		// sidecar, carrying manifests/dashboards' file byte for byte.
		name:   "dashboard",
		values: "dashboard:\n  enabled: true\n  namespace: prometheus\n  annotations:\n    grafana_folder: Kong\n",
		check: func(t *testing.T, r rendering) {
			cm := find[corev1.ConfigMap](t, r.objs, "prometheus", "kong-metrics-sidecar-dashboard")
			if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Kong" {
				t.Errorf("ConfigMap labels %v annotations %v, want grafana_dashboard: \"1\" and grafana_folder: Kong", cm.Labels, cm.Annotations)
			}
			if len(cm.Data) != 1 || cm.Data[dashboardKey] != readFile(t, dashboardFile) {
				t.Errorf("ConfigMap data keys %d; %s is not %s byte for byte", len(cm.Data), dashboardKey, dashboardFile)
			}
			if len(all[corev1.ConfigMap](r.objs)) != 1 {
				t.Error("more ConfigMaps than the dashboard's")
			}
		},
	},
	{
		// The alerting rules with every setting changed: each lands where
		// it belongs in the rules (the defaults are manifests/alerts',
		// manifests_test.go).
		name: "prometheus-rule",
		values: `prometheusRule:
  enabled: true
  namespace: monitoring
  labels:
    release: kps
  runbookURL: https://docs.example.com/runbooks.md
  sidecarJob: kong-sidecars
  alerts:
    kongUnreachable: {for: 2m}
    injectorCertificateExpiry: {for: 1h, warningDays: 21, criticalDays: 3}
    latencySeriesAbsent: {for: 30m, lookback: 3h}
`,
		apiVersions: []string{monitoringAPI},
		check: func(t *testing.T, r rendering) {
			pr := find[monitoringv1.PrometheusRule](t, r.objs, "monitoring", "kong-metrics-sidecar")
			if pr.Labels["release"] != "kps" {
				t.Errorf("PrometheusRule labels %v, want release: kps", pr.Labels)
			}
			rules := map[string][]monitoringv1.Rule{}
			for _, g := range pr.Spec.Groups {
				for _, rule := range g.Rules {
					rules[rule.Alert] = append(rules[rule.Alert], rule)
				}
			}
			want := func(alert string, i int, what, got, want string) {
				t.Helper()
				if !strings.Contains(got, want) {
					t.Errorf("%s[%d] %s %q, want it to contain %q", alert, i, what, got, want)
				}
			}
			for alert, rs := range rules {
				for i, rule := range rs {
					if alert != "" {
						want(alert, i, "runbook_url", rule.Annotations["runbook_url"], "https://docs.example.com/runbooks.md#"+strings.ToLower(alert))
					}
				}
			}
			want("KongMetricsSidecarKongUnreachable", 0, "for", string(*rules["KongMetricsSidecarKongUnreachable"][0].For), "2m")
			want("KongMetricsSidecarExtensionRejected", 0, "for (default)", string(*rules["KongMetricsSidecarExtensionRejected"][0].For), "5m")
			want("KongMetricsSidecarTargetDown", 0, "expr", rules["KongMetricsSidecarTargetDown"][0].Expr.String(), `up{job=~"kong-sidecars"}`)
			expiry := rules["KongMetricsInjectorCertificateExpiresSoon"]
			if len(expiry) != 2 {
				t.Fatalf("%d KongMetricsInjectorCertificateExpiresSoon rules, want 2 (warning, critical)", len(expiry))
			}
			want("KongMetricsInjectorCertificateExpiresSoon", 0, "expr", expiry[0].Expr.String(), "< 21 * 86400")
			want("KongMetricsInjectorCertificateExpiresSoon", 0, "summary", expiry[0].Annotations["summary"], "within 21 days")
			want("KongMetricsInjectorCertificateExpiresSoon", 1, "expr", expiry[1].Expr.String(), "< 3 * 86400")
			want("KongMetricsInjectorCertificateExpiresSoon", 1, "summary", expiry[1].Annotations["summary"], "within 3 days")
			want("KongMetricsInjectorCertificateExpiresSoon", 1, "for", string(*expiry[1].For), "1h")
			chain := rules["KongMetricsSidecarLatencySeriesAbsent"][0]
			want("KongMetricsSidecarLatencySeriesAbsent", 0, "for", string(*chain.For), "30m")
			want("KongMetricsSidecarLatencySeriesAbsent", 0, "expr", chain.Expr.String(), "[3h]")
			want("KongMetricsSidecarLatencySeriesAbsent", 0, "description", chain.Annotations["description"], "within the last 3h")
			// Prometheus's own template braces survive Helm's.
			want("KongMetricsSidecarKongUnreachable", 0, "description", rules["KongMetricsSidecarKongUnreachable"][0].Annotations["description"], "{{ $labels.namespace }}/{{ $labels.pod }}")
		},
	},
	{
		name:   "prometheus-rule-without-crds",
		values: "prometheusRule:\n  enabled: true\n",
		check: func(t *testing.T, r rendering) {
			wantNoObjects[monitoringv1.PrometheusRule](t, r)
		},
	},
	{
		name: "custom",
		values: tutorialExtension + `
  kongServiceMappings:
  - name: legacy
    spec:
      services:
      - kongService: legacy-api
        namespace: kong
        name: command
fullnameOverride: kms
image:
  repository: registry.example.com/team/kms
  tag: v9.9.9
  pullPolicy: Always
imagePullSecrets:
- name: registry
sidecar:
  image:
    repository: registry.example.com/team/kms-sidecar
  defaultConfigMap: kms-extension
logLevel: debug
logFormat: text
kongNamespaces: [kong, kong-eu]
replicaCount: 3
podLabels:
  team: platform
podAnnotations:
  example.com/owner: platform
extraLabels:
  cost-center: "42"
nodeSelector:
  kubernetes.io/os: linux
tolerations:
- key: dedicated
  operator: Equal
  value: infra
  effect: NoSchedule
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/arch
          operator: In
          values: [amd64, arm64]
priorityClassName: system-cluster-critical
webhook:
  failurePolicy: Fail
  timeoutSeconds: 3
  excludeNamespaces: [kube-system, kube-public]
serviceAccount:
  annotations:
    example.com/role: injector
`,
		check: func(t *testing.T, r rendering) {
			in := injectorOf(t, r)
			spec := in.deployment.Spec.Template.Spec
			if in.deployment.Name != "kms" || in.container.Image != "registry.example.com/team/kms:v9.9.9" || in.container.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("Deployment %q image %q %s, want kms, registry.example.com/team/kms:v9.9.9, Always", in.deployment.Name, in.container.Image, in.container.ImagePullPolicy)
			}
			if got := in.settings.SidecarImage; got != "registry.example.com/team/kms-sidecar:v9.9.9" {
				t.Errorf("sidecar image %q, want the repository set and the tag of image.tag", got)
			}
			if in.settings.DefaultConfigMap != "kms-extension" || in.settings.LogLevel.String() != "DEBUG" || in.settings.LogFormat != "text" {
				t.Errorf("settings %+v", in.settings)
			}
			if *in.deployment.Spec.Replicas != 3 || spec.PriorityClassName != "system-cluster-critical" ||
				spec.NodeSelector["kubernetes.io/os"] != "linux" || len(spec.Tolerations) != 1 || spec.Affinity.NodeAffinity == nil ||
				len(spec.ImagePullSecrets) != 1 || spec.ServiceAccountName != "kms" {
				t.Errorf("pod spec does not carry the values: %+v", spec)
			}
			if got := in.deployment.Spec.Template.Labels; got["team"] != "platform" || got["cost-center"] != "42" {
				t.Errorf("pod labels %v, want podLabels and extraLabels", got)
			}
			if got := in.deployment.Spec.Template.Annotations["example.com/owner"]; got != "platform" {
				t.Errorf("pod annotations %v", in.deployment.Spec.Template.Annotations)
			}
			for _, o := range r.objs {
				m := objectMeta(t, o)
				if m.GetLabels()["cost-center"] != "42" {
					t.Errorf("%s: labels %v, want extraLabels", o.id(), m.GetLabels())
				}
			}
			w := in.webhook.Webhooks[0]
			if *w.FailurePolicy != admissionregistrationv1.Fail || *w.TimeoutSeconds != 3 {
				t.Errorf("webhook failurePolicy %s timeoutSeconds %d", *w.FailurePolicy, *w.TimeoutSeconds)
			}
			if got, want := w.NamespaceSelector.MatchExpressions[0].Values, []string{"kube-system", "kube-public", releaseNamespace}; !slices.Equal(got, want) {
				t.Errorf("excluded namespaces %v, want %v", got, want)
			}
			cms := all[corev1.ConfigMap](r.objs)
			if len(cms) != 2 {
				t.Fatalf("%d ConfigMaps, want one in each of kong, kong-eu", len(cms))
			}
			for _, cm := range cms {
				ext, err := config.ParseExtension([]byte(cm.Data["config.yaml"]))
				if err != nil {
					t.Fatalf("ConfigMap %s/%s: %v", cm.Namespace, cm.Name, err)
				}
				if ext.Documents != 2 || len(ext.Selection.Mappings) != 1 || len(ext.Selection.Services) != 1 {
					t.Errorf("ConfigMap %s/%s: %d documents, %d mappings, %d Services; want 2, 1, 1", cm.Namespace, cm.Name, ext.Documents, len(ext.Selection.Mappings), len(ext.Selection.Services))
				}
				for svc := range ext.Selection.Services {
					if svc.Namespace != cm.Namespace {
						t.Errorf("ConfigMap %s/%s selects %v, want a Service of its own namespace", cm.Namespace, cm.Name, svc)
					}
				}
			}
			if sa := find[corev1.ServiceAccount](t, r.objs, releaseNamespace, "kms"); sa.Annotations["example.com/role"] != "injector" {
				t.Errorf("ServiceAccount annotations %v", sa.Annotations)
			}
		},
	},
}

// TestRender renders every case, decodes every object strictly, checks
// what holds for every rendering and what the case is about, and compares
// the manifest with testdata/<case>.yaml (go test -update rewrites them).
func TestRender(t *testing.T) {
	for _, c := range renderCases {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.values, renderOptions{apiVersions: c.apiVersions})
			checkInvariants(t, r)
			c.check(t, r)
			golden(t, filepath.Join("testdata", c.name+".yaml"), normalizeGenerated(r.manifest))
		})
	}
}

// TestGoldenFilesHaveCases keeps testdata/ to the cases: a golden file of a
// removed case fails.
func TestGoldenFilesHaveCases(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if !slices.ContainsFunc(renderCases, func(c renderCase) bool { return c.name == name }) {
			t.Errorf("%s: no render case named %q", f, name)
		}
	}
}

// generated matches what differs from one rendering to the next without
// cert-manager: the certificates, keys and their expiry.
var generated = regexp.MustCompile(`(?m)^(\s*(?:tls\.crt|tls\.key|ca\.crt|caBundle|kong-metrics-sidecar\.io/not-after): ).+$`)

func normalizeGenerated(manifest string) string {
	return generated.ReplaceAllString(manifest, "${1}<generated>")
}

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("the rendering differs from %s (go test -update rewrites it after review); got:\n%s", path, got)
	}
}

// injector is a rendering's injector: its objects and settings.
type injector struct {
	deployment *appsv1.Deployment
	container  *corev1.Container
	service    *corev1.Service
	webhook    *admissionregistrationv1.MutatingWebhookConfiguration
	// settings are what the injector reads from the container's variables.
	settings inject.Settings
}

func injectorOf(t *testing.T, r rendering) injector {
	t.Helper()
	deps := all[appsv1.Deployment](r.objs)
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	in := injector{deployment: deps[0]}
	in.service = find[corev1.Service](t, r.objs, releaseNamespace, in.deployment.Name)
	in.webhook = find[admissionregistrationv1.MutatingWebhookConfiguration](t, r.objs, "", in.deployment.Name)
	cs := in.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "injector" {
		t.Fatalf("Deployment containers %v, want one named injector", cs)
	}
	in.container = &cs[0]
	var environ []string
	for _, e := range in.container.Env {
		if e.ValueFrom != nil {
			t.Fatalf("variable %s comes from %v; the chart sets values", e.Name, e.ValueFrom)
		}
		environ = append(environ, e.Name+"="+e.Value)
	}
	s, err := inject.LoadSettings(environ)
	if err != nil {
		t.Fatalf("the injector does not start with the chart's variables:\n%v", err)
	}
	in.settings = s
	if len(in.webhook.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(in.webhook.Webhooks))
	}
	return in
}

// checkInvariants checks what every rendering must hold: the API server
// reaches the injector through the Service on the port it serves TLS on,
// with a certificate for the Service's name; the selectors select the pods;
// the TLS and extension volumes are directory mounts; every ConfigMap holds
// a valid extension file.
func checkInvariants(t *testing.T, r rendering) {
	t.Helper()
	for _, cm := range all[corev1.ConfigMap](r.objs) {
		if _, ok := cm.Data[dashboardKey]; ok {
			continue // the Grafana dashboard's
		}
		if _, err := config.ParseExtension([]byte(cm.Data["config.yaml"])); err != nil {
			t.Errorf("ConfigMap %s/%s: config.yaml: %v", cm.Namespace, cm.Name, err)
		}
	}
	in := injectorOf(t, r)
	pod := in.deployment.Spec.Template
	if sel, err := labels.ValidatedSelectorFromSet(in.service.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not select the pod labels %v", in.service.Spec.Selector, pod.Labels)
	}
	if sel, err := labels.ValidatedSelectorFromSet(in.deployment.Spec.Selector.MatchLabels); err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Deployment selector %v does not select its pod labels %v", in.deployment.Spec.Selector, pod.Labels)
	}
	for _, pdb := range all[policyv1.PodDisruptionBudget](r.objs) {
		if !slices.Equal(sortedKeys(pdb.Spec.Selector.MatchLabels), sortedKeys(in.deployment.Spec.Selector.MatchLabels)) {
			t.Errorf("PodDisruptionBudget selector %v, Deployment's %v", pdb.Spec.Selector, in.deployment.Spec.Selector)
		}
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.LabelSelector == nil || !slices.Equal(sortedKeys(c.LabelSelector.MatchLabels), sortedKeys(in.deployment.Spec.Selector.MatchLabels)) {
			t.Errorf("topologySpreadConstraint %s selects %v, want the Deployment's pods", c.TopologyKey, c.LabelSelector)
		}
	}
	ref := in.webhook.Webhooks[0].ClientConfig.Service
	if ref == nil || ref.Name != in.service.Name || ref.Namespace != in.service.Namespace || ref.Port == nil || *ref.Port != in.service.Spec.Ports[0].Port {
		t.Errorf("webhook calls %+v, the Service is %s/%s port %d", ref, in.service.Namespace, in.service.Name, in.service.Spec.Ports[0].Port)
	}
	if tp := in.service.Spec.Ports[0].TargetPort; !slices.ContainsFunc(in.container.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == tp.String() && p.ContainerPort == 9443
	}) {
		t.Errorf("Service targetPort %v is not the container's https port 9443 (INJECTOR_LISTEN_ADDR's default)", tp)
	}
	for _, m := range in.container.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s mounted with subPath; a renewed certificate would never arrive", m.Name)
		}
	}
	if got, want := in.settings.TLSCertFile, "/etc/kong-metrics-injector/tls/tls.crt"; len(in.container.VolumeMounts) != 1 || !strings.HasPrefix(want, in.container.VolumeMounts[0].MountPath+"/") || got != want {
		t.Errorf("the injector reads %s; mounts %v", got, in.container.VolumeMounts)
	}
	secretName := pod.Spec.Volumes[0].Secret.SecretName
	if certs := all[cmv1.Certificate](r.objs); len(certs) > 0 {
		if !slices.ContainsFunc(certs, func(c *cmv1.Certificate) bool { return c.Spec.SecretName == secretName }) {
			t.Errorf("no Certificate writes Secret %s, which the injector mounts", secretName)
		}
	} else {
		checkSelfSigned(t, r, in, secretName)
	}
	if sc := in.container.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v is not locked down", sc)
	}
	// A token only for the route mapping, the injector's only API access.
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a != (len(in.settings.RouteMappingNamespaces) > 0) {
		t.Errorf("the injector's pod mounts a service account token: %v, want it only with the route mapping (namespaces %q)", a, in.settings.RouteMappingNamespaces)
	}
}

// serviceDNSNames are the names the API server dials for svc.
func serviceDNSNames(svc *corev1.Service) []string {
	n := svc.Name + "." + svc.Namespace + ".svc"
	return []string{n, n + ".cluster.local"}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// wantNoObjects fails when the rendering holds an object of type T.
func wantNoObjects[T any](t *testing.T, r rendering) {
	t.Helper()
	if got := all[T](r.objs); len(got) > 0 {
		var zero T
		t.Errorf("%d objects of type %T, want none", len(got), zero)
	}
}

// appVersion is the chart's appVersion.
func appVersion(t *testing.T) string {
	t.Helper()
	v := loadChart(t).Metadata.AppVersion
	if v == "" {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return v
}
