package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifestsDir is the kustomize install, beside charts/.
var manifestsDir = filepath.Join("..", "..", "manifests")

// helmLabels are the labels the chart adds that a kustomize install does
// not have: Helm's own, and the release's name in the selectors (one
// namespace may hold several releases). The comparison drops them wherever
// labels are (metadata.labels, a pod template's labels, matchLabels, a
// Service's selector).
var helmLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// sourceOfTruthCases pair a kustomization under manifests/ with the chart
// values that render the same objects, and say which objects of each side
// the pair covers. Where make manifests generates the kustomization's files
// from the chart (manifestgen, TestManifestsCurrent), the pair checks what
// is still written by hand around them: that kustomization.yaml lists every
// generated file and changes nothing the chart sets (the image's tag it
// adds is the chart's appVersion). Where the files are written by hand
// (the tutorial's extension, the dashboard's ConfigMap), it keeps them and
// the chart the same.
var sourceOfTruthCases = []struct {
	dir string
	// values, or the file holding them.
	values, valuesFile string
	apiVersions        []string
	// chart and kustomize select the objects compared; nil: all.
	chart, kustomize func(object) bool
}{
	{
		// The injector with cert-manager, as manifests/injector installs
		// it. The chart does not create its namespace (helm install
		// --create-namespace does).
		dir:       "injector",
		values:    "fullnameOverride: kong-metrics-injector\ncertManager:\n  enabled: true\n",
		kustomize: func(o object) bool { return o.gvk.Kind != "Namespace" },
	},
	{
		// The tutorial's values (docs/install.md), which also hold the
		// extension below.
		dir:         "monitoring/servicemonitor",
		valuesFile:  tutorialValuesFile,
		apiVersions: []string{monitoringAPI},
		chart:       func(o object) bool { return inNamespace("kong")(o) && o.gvk.Kind != "ConfigMap" },
	},
	{
		dir:         "monitoring/podmonitor",
		values:      "podMonitor:\n  enabled: true\n  labels:\n    release: prometheus\n",
		apiVersions: []string{monitoringAPI},
		chart:       inNamespace("kong"),
	},
	{
		// The tutorial's extension: the ConfigMap, not the tutorial's
		// own objects.
		dir:         "examples",
		valuesFile:  tutorialValuesFile,
		apiVersions: []string{monitoringAPI},
		chart:       ofKind("ConfigMap"),
		kustomize:   ofKind("ConfigMap"),
	},
	{
		// The alerting rules with the chart's defaults, in the tutorial's
		// kube-prometheus-stack namespace with its rule selector's label.
		dir:         "alerts",
		values:      "prometheusRule:\n  enabled: true\n  namespace: prometheus\n  labels:\n    release: prometheus\n",
		apiVersions: []string{monitoringAPI},
		chart:       ofKind("PrometheusRule"),
	},
	{
		// The Grafana dashboard's ConfigMap, in the tutorial's
		// kube-prometheus-stack namespace.
		dir:    "dashboards",
		values: "dashboard:\n  enabled: true\n  namespace: prometheus\n",
		chart:  ofKind("ConfigMap"),
	},
}

// inNamespace selects the objects in ns but the injector's Role and
// RoleBinding (the route mapping's, compared with manifests/injector).
func inNamespace(ns string) func(object) bool {
	return func(o object) bool { return o.namespace == ns && o.gvk.Group != "rbac.authorization.k8s.io" }
}
func ofKind(kind string) func(object) bool { return func(o object) bool { return o.gvk.Kind == kind } }

// TestChartMatchesManifests: for each pair, `kustomize build
// manifests/<dir>` and the chart rendered with the pair's values hold the
// same objects, field by field, apart from Helm's labels. A change to a
// hand-written side that is not made to the other fails here.
func TestChartMatchesManifests(t *testing.T) {
	for _, c := range sourceOfTruthCases {
		t.Run(c.dir, func(t *testing.T) {
			values := c.values
			if c.valuesFile != "" {
				values = readFile(t, c.valuesFile)
			}
			want := selectObjects(kustomizeBuild(t, c.dir), c.kustomize)
			got := selectObjects(render(t, values, renderOptions{apiVersions: c.apiVersions}).objs, c.chart)
			for _, d := range compareObjects(t, got, want) {
				t.Error(d)
			}
		})
	}
}

// TestCompareObjectsFails shows that the comparison above sees a changed
// field and a missing object.
func TestCompareObjectsFails(t *testing.T) {
	want := selectObjects(kustomizeBuild(t, "injector"), func(o object) bool { return o.gvk.Kind != "Namespace" })
	got := selectObjects(render(t, "fullnameOverride: kong-metrics-injector\ncertManager:\n  enabled: true\nreplicaCount: 3\n", renderOptions{}).objs, nil)
	if diffs := compareObjects(t, got, want); len(diffs) != 1 {
		t.Errorf("replicaCount 3 against the manifests' 2: %d differences, want 1: %q", len(diffs), diffs)
	}
	if diffs := compareObjects(t, got[1:], want); len(diffs) != 2 {
		t.Errorf("an object left out: %d differences, want 2 (it, and the replicas): %q", len(diffs), diffs)
	}
}

// kustomizeBuild runs `kustomize build manifests/<dir>` and decodes each
// object of a kind the chart renders strictly, as manifests/test does.
func kustomizeBuild(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(manifestsDir, dir))
	if err != nil {
		t.Fatalf("kustomize build manifests/%s: %v", dir, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		g := r.GetGvk()
		o := object{namespace: r.GetNamespace(), name: r.GetName(), yaml: doc}
		o.gvk.Group, o.gvk.Version, o.gvk.Kind = g.Group, g.Version, g.Kind
		// Kinds the chart never renders (the namespace, the tutorial's
		// own objects) are not compared, so they need no Go type here.
		if _, ok := goTypes[o.gvk]; ok {
			if o.value, err = decodeObject(doc); err != nil {
				t.Fatalf("manifests/%s: %s: %v", dir, o.id(), err)
			}
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build manifests/%s rendered nothing", dir)
	}
	return objs
}

func selectObjects(objs []object, keep func(object) bool) []object {
	var out []object
	for _, o := range objs {
		if keep == nil || keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// compareObjects returns one line for each object only one side has and
// one diff for each object that differs.
func compareObjects(t *testing.T, chart, kustomize []object) []string {
	t.Helper()
	byID := func(objs []object) map[string]any {
		m := map[string]any{}
		for _, o := range objs {
			m[o.id()] = normalize(t, o)
		}
		return m
	}
	got, want := byID(chart), byID(kustomize)
	var diffs []string
	for _, id := range ids(kustomize) {
		g, ok := got[id]
		if !ok {
			diffs = append(diffs, id+": in manifests/, not in the chart")
			continue
		}
		if d := cmp.Diff(want[id], g); d != "" {
			diffs = append(diffs, id+" (-manifests/ +chart):\n"+d)
		}
	}
	for _, id := range ids(chart) {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, id+": in the chart, not in manifests/")
		}
	}
	return diffs
}

// normalize turns an object into plain JSON values through its Go type
// (so that 0440 and 288, or "2160h" and "2160h0m0s", compare equal), drops
// Helm's labels, and parses a ConfigMap's config.yaml into its documents
// (so that key order and comments do not count).
func normalize(t *testing.T, o object) any {
	t.Helper()
	if o.value == nil {
		t.Fatalf("%s: not decoded", o.id())
	}
	j, err := json.Marshal(o.value)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	dropHelmLabels(v)
	if cm, ok := o.value.(*corev1.ConfigMap); ok {
		docs, err := yamlDocuments(cm.Data["config.yaml"])
		if err != nil {
			t.Fatalf("%s: config.yaml: %v", o.id(), err)
		}
		v["data"].(map[string]any)["config.yaml"] = docs
	}
	return v
}

// dropHelmLabels deletes helmLabels from every map held under a key that
// holds labels, anywhere in v.
func dropHelmLabels(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if m, ok := child.(map[string]any); ok && (k == "labels" || k == "matchLabels" || k == "selector") {
				for _, l := range helmLabels {
					delete(m, l)
				}
			}
			dropHelmLabels(child)
		}
	case []any:
		for _, child := range v {
			dropHelmLabels(child)
		}
	}
}

// yamlDocuments parses every non-empty document of a YAML stream.
func yamlDocuments(s string) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
	var docs []any
	for {
		var d any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}
