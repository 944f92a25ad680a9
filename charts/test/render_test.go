package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart, beside this module.
var chartDir = filepath.Join("..", "kong-metrics-sidecar")

// The release the tests render, as docs/install.md installs it.
const (
	releaseName      = "kong-metrics-sidecar"
	releaseNamespace = "kong-metrics-sidecar-system"
)

// tutorialValuesFile holds the values docs/install.md installs the chart
// with for Kong's tutorial.
var tutorialValuesFile = filepath.Join("..", "examples", "tutorial-values.yaml")

// monitoringAPI is what a cluster with Prometheus Operator's CRDs serves.
const monitoringAPI = "monitoring.coreos.com/v1"

// loadChart loads the chart from disk; it fails the test if it does not load.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir, err)
	}
	return c
}

// readFile reads a file; it fails the test if it cannot.
func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// renderOptions say how a rendering differs from a plain helm template.
type renderOptions struct {
	// apiVersions are announced by the cluster on top of Helm's defaults.
	apiVersions []string
	// upgrade renders as helm upgrade does (.Release.IsUpgrade).
	upgrade bool
	// cluster answers the templates' lookup calls; nil: helm template's
	// empty answers.
	cluster engine.ClientProvider
}

// rendering is what the chart renders: its objects, in Helm's install
// order, the manifest as helm template prints it, and NOTES.txt.
type rendering struct {
	objs     []object
	manifest string
	notes    string
}

// object is one rendered object.
type object struct {
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	source    string // the template it came from
	yaml      []byte
	value     any // decoded strictly into its Go type
}

func (o object) id() string {
	return fmt.Sprintf("%s %s/%s", o.gvk.Kind, o.namespace, o.name)
}

// render renders the chart with values (YAML) and decodes every object
// strictly; any failure fails the test.
func render(t *testing.T, values string, opts renderOptions) rendering {
	t.Helper()
	r, err := renderErr(loadChart(t), values, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.objs) == 0 {
		t.Fatal("the chart rendered no object")
	}
	return r
}

// renderErr is render returning its error: values that fail the schema,
// a template that fails, an object that does not decode.
func renderErr(c *chart.Chart, values string, opts renderOptions) (rendering, error) {
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return rendering{}, fmt.Errorf("values: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(append(chartutil.VersionSet{}, caps.APIVersions...), opts.apiVersions...)
	relOpts := chartutil.ReleaseOptions{
		Name:      releaseName,
		Namespace: releaseNamespace,
		Revision:  1,
		IsInstall: !opts.upgrade,
		IsUpgrade: opts.upgrade,
	}
	if opts.upgrade {
		relOpts.Revision = 2
	}
	top, err := chartutil.ToRenderValues(c, vals, relOpts, caps)
	if err != nil {
		return rendering{}, err
	}
	var files map[string]string
	if opts.cluster != nil {
		files, err = engine.RenderWithClientProvider(c, top, opts.cluster)
	} else {
		files, err = engine.Render(c, top)
	}
	if err != nil {
		return rendering{}, err
	}
	var r rendering
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return rendering{}, err
	}
	if len(hooks) > 0 {
		return rendering{}, fmt.Errorf("%d hooks; the chart has none", len(hooks))
	}
	var b strings.Builder
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, m.Content)
		v, err := decodeObject([]byte(m.Content))
		if err != nil {
			return rendering{}, fmt.Errorf("%s: %s %s: %w", m.Name, m.Head.Kind, m.Head.Metadata.Name, err)
		}
		tm := metav1.TypeMeta{APIVersion: m.Head.Version, Kind: m.Head.Kind}
		acc, err := meta.Accessor(v)
		if err != nil {
			return rendering{}, fmt.Errorf("%s: %w", m.Name, err)
		}
		r.objs = append(r.objs, object{
			gvk:       tm.GroupVersionKind(),
			namespace: acc.GetNamespace(),
			name:      acc.GetName(),
			source:    m.Name,
			yaml:      []byte(m.Content),
			value:     v,
		})
	}
	r.manifest = b.String()
	seen := map[string]bool{}
	for _, o := range r.objs {
		if seen[o.id()] {
			return rendering{}, fmt.Errorf("%s rendered twice", o.id())
		}
		seen[o.id()] = true
	}
	return r, nil
}

// goTypes maps every kind the chart may render to its Go type. A rendered
// object of any other kind fails the tests: add its type here first.
var goTypes = map[schema.GroupVersionKind]func() any{
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"):        func() any { return new(corev1.ServiceAccount) },
	corev1.SchemeGroupVersion.WithKind("Service"):               func() any { return new(corev1.Service) },
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):             func() any { return new(corev1.ConfigMap) },
	corev1.SchemeGroupVersion.WithKind("Secret"):                func() any { return new(corev1.Secret) },
	appsv1.SchemeGroupVersion.WithKind("Deployment"):            func() any { return new(appsv1.Deployment) },
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"): func() any { return new(policyv1.PodDisruptionBudget) },
	admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"): func() any {
		return new(admissionregistrationv1.MutatingWebhookConfiguration)
	},
	cmv1.SchemeGroupVersion.WithKind("Issuer"):                 func() any { return new(cmv1.Issuer) },
	cmv1.SchemeGroupVersion.WithKind("Certificate"):            func() any { return new(cmv1.Certificate) },
	monitoringv1.SchemeGroupVersion.WithKind("ServiceMonitor"): func() any { return new(monitoringv1.ServiceMonitor) },
	monitoringv1.SchemeGroupVersion.WithKind("PodMonitor"):     func() any { return new(monitoringv1.PodMonitor) },
	monitoringv1.SchemeGroupVersion.WithKind("PrometheusRule"): func() any { return new(monitoringv1.PrometheusRule) },

	// The route mapping's RBAC.
	rbacv1.SchemeGroupVersion.WithKind("ClusterRole"):        func() any { return new(rbacv1.ClusterRole) },
	rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"): func() any { return new(rbacv1.ClusterRoleBinding) },
	rbacv1.SchemeGroupVersion.WithKind("Role"):               func() any { return new(rbacv1.Role) },
	rbacv1.SchemeGroupVersion.WithKind("RoleBinding"):        func() any { return new(rbacv1.RoleBinding) },
}

// decodeObject decodes one YAML document strictly into the Go type of its
// apiVersion and kind: field names are case-sensitive, and an unknown or
// repeated field is an error, as in a strict server-side apply.
func decodeObject(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	newObj, ok := goTypes[tm.GroupVersionKind()]
	if !ok {
		return nil, fmt.Errorf("no Go type for apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strictErrs...); err != nil {
		return nil, err
	}
	return obj, nil
}

// find returns the one object of type T in namespace ("" for a
// cluster-scoped object) named name; it fails the test when there is none.
func find[T any](t *testing.T, objs []object, namespace, name string) *T {
	t.Helper()
	var found []*T
	for _, o := range objs {
		if v, ok := o.value.(*T); ok && o.namespace == namespace && o.name == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %s/%s, want 1", len(found), zero, namespace, name)
	}
	return found[0]
}

// all returns every object of type T.
func all[T any](objs []object) []*T {
	var found []*T
	for _, o := range objs {
		if v, ok := o.value.(*T); ok {
			found = append(found, v)
		}
	}
	return found
}

// ids lists the objects' kinds, namespaces and names, sorted.
func ids(objs []object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.id()
	}
	sort.Strings(out)
	return out
}
