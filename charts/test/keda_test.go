package test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kedaAPI is what a cluster with KEDA's CRDs serves.
const kedaAPI = "keda.sh/v1alpha1"

// scaledObjectKind is KEDA's ScaledObject. It has no Go type here (KEDA's
// module is too large for this test module): it decodes into an Unstructured, and
// manifests/test checks manifests/examples/keda against KEDA's CRD schema,
// which the chart's rendering of charts/examples/keda-values.yaml must
// equal (sourceOfTruthCases below).
var scaledObjectKind = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

// kedaValuesFile holds the tutorial's ScaledObject as chart values.
const kedaValuesFile = "../examples/keda-values.yaml"

// dig returns the value at path in a decoded object, failing the test if
// a step is missing.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, p)
			}
			if v, ok = m[p]; !ok {
				t.Fatalf("%v: no %q", path, p)
			}
		case int:
			s, ok := v.([]any)
			if !ok || p >= len(s) {
				t.Fatalf("%v: no item %d", path, p)
			}
			v = s[p]
		}
	}
	return v
}

func init() {
	goTypes[scaledObjectKind] = func() any { return new(unstructured.Unstructured) }
	renderCases = append(renderCases, renderCase{
		// The tutorial's ScaledObject.
		name:        "keda",
		values:      "keda:\n  scaledObjects:\n  - name: command\n    namespace: kong\n",
		apiVersions: []string{kedaAPI},
		check: func(t *testing.T, r rendering) {
			so := find[unstructured.Unstructured](t, r.objs, "kong", "command").Object
			trig := dig(t, so, "spec", "triggers", 0)
			if got := dig(t, trig, "metricType"); got != "Value" {
				t.Errorf("metricType %v, want Value", got)
			}
			md := dig(t, trig, "metadata").(map[string]any)
			if md["threshold"] != "40" || md["ignoreNullValues"] != "false" || md["serverAddress"] != "http://prometheus-kube-prometheus-prometheus.prometheus.svc:9090" {
				t.Errorf("trigger metadata %v", md)
			}
			q := md["query"].(string)
			if n := strings.Count(q, `{exported_namespace="kong",exported_service="command"}`); n != 4 {
				t.Errorf("the query names Service kong/command %d times, want 4:\n%s", n, q)
			}
			if dig(t, so, "spec", "minReplicaCount") != int64(1) || dig(t, so, "spec", "maxReplicaCount") != int64(10) {
				t.Errorf("replicas %v..%v, want 1..10", dig(t, so, "spec", "minReplicaCount"), dig(t, so, "spec", "maxReplicaCount"))
			}
			if ref := dig(t, so, "spec", "scaleTargetRef").(map[string]any); ref["kind"] != "Deployment" || ref["name"] != "command" {
				t.Errorf("scaleTargetRef %v, want Deployment command", ref)
			}
			if _, ok := dig(t, so, "spec").(map[string]any)["advanced"]; ok {
				t.Error("advanced without a behavior")
			}
		},
	}, renderCase{
		// Another Service, a StatefulSet, Prometheus behind bearer auth.
		name: "keda-custom",
		values: "keda:\n  serverAddress: http://thanos-query.monitoring.svc:9090\n  scaledObjects:\n" +
			"  - name: orders\n    namespace: shop\n    service: orders-api\n    threshold: \"25.5\"\n    maxReplicaCount: 30\n" +
			"    scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: orders-db}\n" +
			"    authenticationRef: keda-prometheus\n    authModes: bearer\n",
		apiVersions: []string{kedaAPI},
		check: func(t *testing.T, r rendering) {
			so := find[unstructured.Unstructured](t, r.objs, "shop", "orders").Object
			trig := dig(t, so, "spec", "triggers", 0)
			if got := dig(t, trig, "authenticationRef", "name"); got != "keda-prometheus" {
				t.Errorf("authenticationRef %v", got)
			}
			md := dig(t, trig, "metadata").(map[string]any)
			if md["authModes"] != "bearer" || md["threshold"] != "25.5" || md["serverAddress"] != "http://thanos-query.monitoring.svc:9090" {
				t.Errorf("trigger metadata %v", md)
			}
			if q := md["query"].(string); strings.Count(q, `{exported_namespace="shop",exported_service="orders-api"}`) != 4 {
				t.Errorf("the query does not name Service shop/orders-api four times:\n%s", q)
			}
			if ref := dig(t, so, "spec", "scaleTargetRef").(map[string]any); ref["kind"] != "StatefulSet" || ref["name"] != "orders-db" {
				t.Errorf("scaleTargetRef %v", ref)
			}
		},
	}, renderCase{
		name:   "keda-without-crds",
		values: "keda:\n  scaledObjects:\n  - name: command\n    namespace: kong\n",
		check: func(t *testing.T, r rendering) {
			for _, o := range r.objs {
				if o.gvk == scaledObjectKind {
					t.Errorf("a ScaledObject %s without keda.sh/v1alpha1 in the cluster", o.id())
				}
			}
		},
	})
	sourceOfTruthCases = append(sourceOfTruthCases, struct {
		dir                string
		values, valuesFile string
		apiVersions        []string
		chart, kustomize   func(object) bool
	}{
		dir:         "examples/keda",
		valuesFile:  kedaValuesFile,
		apiVersions: []string{kedaAPI},
		chart:       ofKind("ScaledObject"),
	})
}
