package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// KEDA's resources are checked against the OpenAPI schemas of KEDA's own
// CRDs rather than its Go types, which would pull KEDA into this module:
// the CRDs come from the KEDA module that integration/e2e/bins/keda pins
// (config/crd, built with kustomize as KEDA installs it), read from the Go
// module cache, and an object is checked the way the API server checks a
// custom resource: pruning must find no unknown field, and the schema's
// types, enums and required fields must hold. The schemas' CEL rules
// (x-kubernetes-validations) are not evaluated here; the end-to-end test
// applies the example to a real API server, which does.

const kedaModule = "github.com/kedacore/keda/v2"

var (
	scaledObjectGVK          = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	triggerAuthenticationGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}
)

// kedaObject is a KEDA resource, decoded by UnmarshalJSON only if it
// satisfies its CRD's schema.
type kedaObject struct {
	metav1.ObjectMeta
	gvk schema.GroupVersionKind
	// Object is the whole resource, as JSON decodes it.
	Object map[string]any
}

// crdSchema is what the API server validates one version of a CRD with.
type crdSchema struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
}

var kedaSchemas struct {
	once sync.Once
	m    map[schema.GroupVersionKind]crdSchema
	err  error
}

// kedaModuleDir is KEDA's module in the module cache, downloaded (the
// source zip only, nothing built) when it is not there yet.
func kedaModuleDir() (string, error) {
	bins, err := filepath.Abs(filepath.Join(manifestsDir, "..", "integration", "e2e", "bins", "keda"))
	if err != nil {
		return "", err
	}
	list := exec.Command("go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", kedaModule)
	list.Dir = bins
	out, err := list.Output()
	if err == nil && strings.TrimSpace(string(out)) != "" {
		return strings.TrimSpace(string(out)), nil
	}
	dl := exec.Command("go", "mod", "download", "-json", kedaModule)
	dl.Dir = bins
	out, err = dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s in %s: %w", kedaModule, bins, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download -json %s: %w", kedaModule, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", kedaModule, info.Error)
	}
	return info.Dir, nil
}

// loadKEDASchemas builds KEDA's config/crd and returns the schema of every
// version each CRD serves.
func loadKEDASchemas() (map[schema.GroupVersionKind]crdSchema, error) {
	dir, err := kedaModuleDir()
	if err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(dir, "config", "crd"))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s/config/crd: %w", dir, err)
	}
	out := map[schema.GroupVersionKind]crdSchema{}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := decodeStrict(doc, &crd); err != nil {
			return nil, fmt.Errorf("KEDA CRD %s: %w", r.GetName(), err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("KEDA CRD %s %s: %w", crd.Name, v.Name, err)
			}
			structural, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("KEDA CRD %s %s: not a structural schema: %w", crd.Name, v.Name, err)
			}
			validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("KEDA CRD %s %s: %w", crd.Name, v.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			out[gvk] = crdSchema{structural: structural, validator: validator}
		}
	}
	for _, want := range []schema.GroupVersionKind{scaledObjectGVK, triggerAuthenticationGVK} {
		if _, ok := out[want]; !ok {
			return nil, fmt.Errorf("KEDA's config/crd in %s has no schema for %s", dir, want)
		}
	}
	return out, nil
}

// UnmarshalJSON decodes a KEDA resource and checks it against its CRD's
// schema: an unknown field (one pruning would drop), a wrong type or enum
// value, or a missing required field is an error, and so is metadata that
// does not decode strictly.
func (o *kedaObject) UnmarshalJSON(data []byte) error {
	kedaSchemas.once.Do(func() { kedaSchemas.m, kedaSchemas.err = loadKEDASchemas() })
	if kedaSchemas.err != nil {
		return fmt.Errorf("loading KEDA's CRD schemas: %w", kedaSchemas.err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		return err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return err
	}
	gvk := tm.GroupVersionKind()
	s, ok := kedaSchemas.m[gvk]
	if !ok {
		return fmt.Errorf("KEDA's CRDs serve no %s", gvk)
	}
	var errs []error
	if md, ok := obj["metadata"]; ok {
		raw, err := json.Marshal(md)
		if err != nil {
			return err
		}
		var meta metav1.ObjectMeta
		if err := decodeStrict(raw, &meta); err != nil {
			errs = append(errs, fmt.Errorf("metadata: %w", err))
		}
		o.ObjectMeta = meta
	}
	pruned := deepCopyJSON(obj)
	if unknown := pruning.PruneWithOptions(pruned, s.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("unknown fields %s", strings.Join(unknown, ", ")))
	}
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, s.validator) {
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s against KEDA's CRD schema: %w", gvk.Kind, errors.Join(errs...))
	}
	o.gvk, o.Object = gvk, obj
	return nil
}

func deepCopyJSON(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a value JSON has just decoded
	}
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// field returns the value at path in o, failing the test when any step is
// missing.
func (o *kedaObject) field(t *testing.T, path ...any) any {
	t.Helper()
	var v any = o.Object
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%s %s: %v is not an object", o.gvk.Kind, o.Name, path[:i])
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("%s %s has no %v", o.gvk.Kind, o.Name, path[:i+1])
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%s %s: %v has no item %d", o.gvk.Kind, o.Name, path[:i], k)
			}
			v = l[k]
		}
	}
	return v
}

// TestKEDAExample: the ScaledObject scales the tutorial's Deployment between
// 1 and 10 replicas on the sidecar's latency for Service kong/command,
// compared as a value with the tutorial's 40 ms, with the tutorial HPA's
// behaviour; the example drops the tutorial's HPA, which KEDA's would fight.
func TestKEDAExample(t *testing.T) {
	objs := render(t, "examples/keda")
	if hpas := all[autoscalingv2.HorizontalPodAutoscaler](objs); len(hpas) != 0 {
		t.Errorf("examples/keda renders %d HorizontalPodAutoscalers; KEDA makes its own, keda-hpa-command", len(hpas))
	}
	so := find[kedaObject](t, objs, "command")
	if so.gvk != scaledObjectGVK || so.Namespace != exampleNamespace {
		t.Fatalf("%s %s/command, want a %s in %s", so.gvk, so.Namespace, scaledObjectGVK, exampleNamespace)
	}
	ref := so.field(t, "spec", "scaleTargetRef").(map[string]any)
	if ref["apiVersion"] != "apps/v1" || ref["kind"] != "Deployment" {
		t.Errorf("scaleTargetRef %v, want a Deployment", ref)
	}
	hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, render(t, "examples"), "command")
	if ref["name"] != hpa.Spec.ScaleTargetRef.Name {
		t.Errorf("scaleTargetRef %v, want the tutorial HPA's Deployment %q", ref, hpa.Spec.ScaleTargetRef.Name)
	}
	if got := so.field(t, "spec", "minReplicaCount"); got != int64(*hpa.Spec.MinReplicas) || got != int64(1) {
		t.Errorf("minReplicaCount %v, want the tutorial's 1 (0 would stop the latency that wakes it)", got)
	}
	if got := so.field(t, "spec", "maxReplicaCount"); got != int64(hpa.Spec.MaxReplicas) {
		t.Errorf("maxReplicaCount %v, want the tutorial's %d", got, hpa.Spec.MaxReplicas)
	}
	raw, err := json.Marshal(so.field(t, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"))
	if err != nil {
		t.Fatal(err)
	}
	var behavior autoscalingv2.HorizontalPodAutoscalerBehavior
	if err := decodeStrict(raw, &behavior); err != nil {
		t.Fatalf("behavior: %v", err)
	}
	if !reflect.DeepEqual(&behavior, hpa.Spec.Behavior) {
		got, _ := yaml.Marshal(behavior)
		want, _ := yaml.Marshal(hpa.Spec.Behavior)
		t.Errorf("behavior:\n%s\nwant the tutorial HPA's:\n%s", got, want)
	}

	triggers := so.field(t, "spec", "triggers").([]any)
	if len(triggers) != 1 {
		t.Fatalf("%d triggers, want 1", len(triggers))
	}
	if got := so.field(t, "spec", "triggers", 0, "type"); got != "prometheus" {
		t.Errorf("trigger type %v, want prometheus", got)
	}
	if got := so.field(t, "spec", "triggers", 0, "metricType"); got != "Value" {
		t.Errorf("metricType %v, want Value (AverageValue divides the latency by the replicas)", got)
	}
	md := so.field(t, "spec", "triggers", 0, "metadata").(map[string]any)
	want := map[string]any{"threshold": "40", "ignoreNullValues": "false"}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("trigger metadata %s = %v, want %q", k, md[k], v)
		}
	}
	// The adapter rule's two rates, with the matchers the adapter fills in
	// for Service kong/command.
	query, _ := md["query"].(string)
	rule := adapterRule(t)
	matchers := `exported_namespace="kong",exported_service="command"`
	num, den, ok := strings.Cut(strings.ReplaceAll(rule.MetricsQuery, "<<.LabelMatchers>>", matchers), "/")
	if !ok {
		t.Fatalf("the adapter rule's metricsQuery is not a quotient: %s", rule.MetricsQuery)
	}
	num, den = strings.Join(strings.Fields(num), " "), strings.Join(strings.Fields(den), " ")
	q := strings.Join(strings.Fields(query), " ")
	wantQuery := "( " + num + " / (" + den + " > 0) or " + den + " * 0 ) and on () count(kong_upstream_latency_ms_count{" + matchers + "})"
	if q != wantQuery {
		t.Errorf("query:\n%s\nwant the adapter rule's quotient for kong/command, 0 without traffic, nothing without the series:\n%s", q, wantQuery)
	}
}

// adapterRule is the prometheus-adapter rule the tutorial ships.
func adapterRule(t *testing.T) discoveryRule {
	t.Helper()
	var v adapterValues
	if err := decodeStrict(stripHeader(readManifest(t, "monitoring/prometheus-adapter/values.yaml")), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Rules.Custom) != 1 {
		t.Fatalf("%d adapter rules, want 1", len(v.Rules.Custom))
	}
	return v.Rules.Custom[0]
}

// TestKEDABearerAuthExample: the bearer-auth variant points the trigger at a
// TriggerAuthentication that reads the token from a Secret.
func TestKEDABearerAuthExample(t *testing.T) {
	// The example with its commented-out components: line uncommented, as
	// its header says.
	k := string(readManifest(t, "examples/keda/kustomization.yaml"))
	const commented = "# components:\n# - bearer-auth\n"
	if !strings.Contains(k, commented) {
		t.Fatalf("examples/keda/kustomization.yaml does not offer %q", commented)
	}
	dir := t.TempDir()
	example, err := filepath.Abs(filepath.Join(manifestsDir, "examples", "keda"))
	if err != nil {
		t.Fatal(err)
	}
	// kustomize takes no absolute paths.
	component, err := filepath.Rel(dir, filepath.Join(example, "bearer-auth"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scaledobject.yaml", "kustomization.yaml"} {
		data := readManifest(t, "examples/keda/"+name)
		if name == "kustomization.yaml" {
			data = []byte(strings.Replace(string(data), commented, "components:\n- "+component+"\n", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := renderErr(dir)
	if err != nil {
		t.Fatalf("kustomize build manifests/examples/keda with components: bearer-auth: %v", err)
	}
	var so, ta *kedaObject
	for _, o := range all[kedaObject](objs) {
		switch o.gvk {
		case scaledObjectGVK:
			so = o
		case triggerAuthenticationGVK:
			ta = o
		}
	}
	if so == nil || ta == nil {
		t.Fatalf("want a ScaledObject and a TriggerAuthentication, have %v and %v", so, ta)
	}
	if got := so.field(t, "spec", "triggers", 0, "authenticationRef", "name"); got != ta.Name {
		t.Errorf("authenticationRef %v, want TriggerAuthentication %s", got, ta.Name)
	}
	if got := so.field(t, "spec", "triggers", 0, "metadata", "authModes"); got != "bearer" {
		t.Errorf("authModes %v, want bearer", got)
	}
	if ta.Namespace != so.Namespace {
		t.Errorf("TriggerAuthentication in %q, ScaledObject in %q: a TriggerAuthentication is namespaced", ta.Namespace, so.Namespace)
	}
	ref := ta.field(t, "spec", "secretTargetRef", 0).(map[string]any)
	if ref["parameter"] != "bearerToken" || ref["name"] == "" || ref["key"] == "" {
		t.Errorf("secretTargetRef %v, want parameter bearerToken from a Secret key", ref)
	}
}

// TestKEDASchemaRejects shows that the schema check fails on a misspelt
// field, a wrong type, a value outside an enum and a missing required field.
func TestKEDASchemaRejects(t *testing.T) {
	const good = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: command, namespace: kong}
spec:
  scaleTargetRef: {name: command}
  triggers:
  - type: prometheus
    metricType: Value
    metadata: {serverAddress: "http://p:9090", query: "up", threshold: "40"}
`
	if _, err := decodeObject([]byte(good)); err != nil {
		t.Fatalf("a valid ScaledObject: %v", err)
	}
	for _, c := range []struct{ what, old, new string }{
		{"misspelt field", "scaleTargetRef:", "scaleTarget:"},
		{"HPA field name", "  triggers:", "  minReplicas: 1\n  triggers:"},
		{"wrong type", "  triggers:", "  maxReplicaCount: ten\n  triggers:"},
		{"enum", "    metricType: Value", "    metricType: Value\n    authenticationRef: {name: a, kind: Secret}"},
		{"misspelt metadata", "metadata: {name", "metadata: {nam"},
	} {
		doc := strings.Replace(good, c.old, c.new, 1)
		if doc == good {
			t.Fatalf("%s: the replacement changed nothing", c.what)
		}
		if _, err := decodeObject([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error:\n%s", c.what, doc)
		} else {
			t.Logf("%s: %v", c.what, err)
		}
	}
	missing := strings.Replace(good, "  scaleTargetRef: {name: command}\n", "", 1)
	if _, err := decodeObject([]byte(missing)); err == nil {
		t.Error("a ScaledObject without scaleTargetRef decoded without an error")
	}
}
