package e2e_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// runtimeValues are what only the running test knows: the CA behind the
// webhook's and the adapter's serving certificates and their ports.
type runtimeValues struct {
	caPEM                     []byte
	injectorPort, adapterPort int
	// operatorCRDs are Prometheus Operator's CRD files, from its module.
	operatorCRDs []string
}

// kustomizeBuild builds integration/e2e/overlay with the run's values added
// by a kustomization of its own in dir, as `kustomize build` would.
func kustomizeBuild(dir string, v runtimeValues) ([]*unstructured.Unstructured, error) {
	overlay, err := filepath.Abs("overlay")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// kustomize takes no absolute paths in resources.
	if overlay, err = filepath.Rel(dir, overlay); err != nil {
		return nil, err
	}
	ca := base64.StdEncoding.EncodeToString(v.caPEM)
	inj, adp := strconv.Itoa(v.injectorPort), strconv.Itoa(v.adapterPort)
	resources := "- " + overlay + "\n"
	for _, f := range v.operatorCRDs {
		rel, err := filepath.Rel(dir, f)
		if err != nil {
			return nil, err
		}
		resources += "- " + rel + "\n"
	}
	k := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
` + resources + `patches:
- target: {kind: MutatingWebhookConfiguration, name: kong-metrics-injector}
  patch: |-
    - {op: add, path: /webhooks/0/clientConfig/caBundle, value: "` + ca + `"}
    - {op: replace, path: /webhooks/0/clientConfig/service/port, value: ` + inj + `}
- target: {kind: Service, name: kong-metrics-injector, namespace: kong-metrics-sidecar-system}
  patch: |-
    - {op: replace, path: /spec/ports/0/port, value: ` + inj + `}
- target: {kind: APIService}
  patch: |-
    - {op: add, path: /spec/caBundle, value: "` + ca + `"}
    - {op: replace, path: /spec/service/port, value: ` + adp + `}
- target: {kind: Service, name: prometheus-adapter, namespace: prometheus}
  patch: |-
    - {op: replace, path: /spec/ports/0/port, value: ` + adp + `}
`
	return buildKustomization(dir, k)
}

// buildKustomization writes kustomization k into dir and builds it, with
// no load restrictions (it names directories outside dir).
func buildKustomization(dir, k string) ([]*unstructured.Unstructured, error) {
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsNone
	resMap, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build: %s: %w", r.CurId(), err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// applier server-side applies objects, finding their resources through
// discovery.
type applier struct {
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(cfg *rest.Config) (*applier, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &applier{client: dc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}, nil
}

// applyAll applies CRDs and Namespaces first, waits for the CRDs to be
// established, then applies the rest. It returns how many objects it
// applied.
func (a *applier) applyAll(ctx context.Context, objs []*unstructured.Unstructured) (int, error) {
	var first, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace":
			first = append(first, o)
		default:
			rest = append(rest, o)
		}
	}
	n := 0
	for _, o := range first {
		if err := a.apply(ctx, o); err != nil {
			return n, err
		}
		n++
	}
	for _, o := range first {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if err := a.waitEstablished(ctx, o.GetName()); err != nil {
			return n, err
		}
	}
	a.mapper.Reset()
	for _, o := range rest {
		if err := a.apply(ctx, o); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapping(ctx, gvk)
	if err != nil {
		return fmt.Errorf("applying %s %s: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.client.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.client.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "e2e", Force: true}); err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// mapping finds gvk's resource through discovery. A kind that discovery
// does not list yet is asked again, from fresh discovery, for up to 10s:
// the API server adds a CRD's resource to discovery from a queue of its
// own, so it can lag behind the CRD's Established condition.
func (a *applier) mapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil || !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		a.mapper.Reset()
	}
}

var crdResource = apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")

func (a *applier) waitEstablished(ctx context.Context, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, err := a.client.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd); err != nil {
				return err
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("CRD %s not established after 30s: %w", name, err)
			}
			return fmt.Errorf("CRD %s not established after 30s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// find returns the built object of kind and name.
func find(objs []*unstructured.Unstructured, kind, name string) (*unstructured.Unstructured, error) {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o, nil
		}
	}
	return nil, fmt.Errorf("kustomize build has no %s %s", kind, name)
}

// without returns objs, in order, without drop.
func without(objs []*unstructured.Unstructured, drop *unstructured.Unstructured) []*unstructured.Unstructured {
	return slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return o == drop })
}

// kinds summarises objects by kind, for the timeline.
func kinds(objs []*unstructured.Unstructured) string {
	count := map[string]int{}
	var order []string
	for _, o := range objs {
		if count[o.GetKind()] == 0 {
			order = append(order, o.GetKind())
		}
		count[o.GetKind()]++
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	return strings.Join(parts, ", ")
}

// operatorModule is the Prometheus Operator module that
// integration/e2e/bins/prometheus-operator builds cmd/operator from.
const operatorModule = "github.com/prometheus-operator/prometheus-operator"

// operatorCRDFiles returns the CRDs of monitoring.coreos.com that
// Prometheus Operator's module ships (example/prometheus-operator-crd), from
// the module cache: the version integration/e2e/bins/prometheus-operator
// pins, which building the operator has downloaded.
func operatorCRDFiles(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", operatorModule)
	cmd.Dir = filepath.Join("bins", "prometheus-operator")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("finding %s in the module cache (run scripts/build-test-bins.sh prometheus-operator): %w", operatorModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return nil, fmt.Errorf("%s is not in the module cache (run scripts/build-test-bins.sh prometheus-operator)", operatorModule)
	}
	files, err := filepath.Glob(filepath.Join(dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRDs under %s/example/prometheus-operator-crd", dir)
	}
	return files, nil
}
