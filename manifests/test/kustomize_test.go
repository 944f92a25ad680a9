package test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifestsDir is manifests/, the parent of this module.
const manifestsDir = ".."

// object is one object a kustomization renders.
type object struct {
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	yaml      []byte
	value     any // decoded strictly into its Go type
}

// render runs `kustomize build` on manifests/<dir> and decodes every object
// strictly; any failure fails the test.
func render(t *testing.T, dir string) []object {
	t.Helper()
	objs, err := renderErr(filepath.Join(manifestsDir, dir))
	if err != nil {
		t.Fatalf("kustomize build manifests/%s: %v", dir, err)
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build manifests/%s rendered nothing", dir)
	}
	return objs
}

func renderErr(dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		v, err := decodeObject(doc)
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", r.GetKind(), r.GetNamespace(), r.GetName(), err)
		}
		g := r.GetGvk()
		objs = append(objs, object{
			gvk:       schema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind},
			namespace: r.GetNamespace(),
			name:      r.GetName(),
			yaml:      doc,
			value:     v,
		})
	}
	return objs, nil
}

// find returns the one object of type T named name; it fails the test when
// there is none or more than one.
func find[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	var found []*T
	for _, o := range objs {
		if v, ok := o.value.(*T); ok && o.name == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T named %q, want 1", len(found), zero, name)
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

// kustomizations lists the directories under manifests/ holding a
// kustomization.yaml, relative to manifests/.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(manifestsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join(manifestsDir, "test") {
			return filepath.SkipDir
		}
		if !d.IsDir() && slices.Contains([]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}, d.Name()) {
			rel, err := filepath.Rel(manifestsDir, filepath.Dir(path))
			if err != nil {
				return err
			}
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestEveryKustomizationBuilds builds every kustomization under manifests/
// and decodes each object it renders strictly into its Go type.
func TestEveryKustomizationBuilds(t *testing.T) {
	dirs := kustomizations(t)
	// The ones the other tests check in detail; a new one is built and
	// decoded here all the same.
	for _, want := range []string{"injector", "monitoring/servicemonitor", "monitoring/podmonitor", "examples", "alerts"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no kustomization in manifests/%s", want)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			seen := map[string]bool{}
			for _, o := range objs {
				id := o.gvk.String() + " " + o.namespace + "/" + o.name
				if seen[id] {
					t.Errorf("%s rendered twice", id)
				}
				seen[id] = true
			}
		})
	}
}

// TestStrictDecodingRejects shows that the decoding the other tests rely on
// fails on a misspelt, miscased or repeated field, and that a broken
// kustomization fails to build.
func TestStrictDecodingRejects(t *testing.T) {
	f := func(what, doc string) {
		t.Helper()
		if _, err := decodeObject([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", what)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}
	// A misspelt field of a built-in type.
	f("Deployment replica", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n")
	// A field in the wrong case: encoding/json would accept it.
	f("webhook FailurePolicy", "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: x}\nwebhooks: [{name: a.b.c, FailurePolicy: Ignore}]\n")
	// A field given twice.
	f("Service port twice", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ClusterIP\n  type: NodePort\n")
	// cert-manager and prometheus-operator types.
	f("Certificate dnsName", "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {dnsName: [a]}\n")
	f("ServiceMonitor endpoint", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoint: [{port: a}]}\n")
	f("PodMonitor honourLabels", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec: {podMetricsEndpoints: [{honourLabels: true}]}\n")
	// Kong's types.
	f("KongPlugin configs", "apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nmetadata: {name: x}\nplugin: prometheus\nconfigs: {}\n")
	f("DataPlane podTemplate", "apiVersion: gateway-operator.konghq.com/v1beta1\nkind: DataPlane\nmetadata: {name: x}\nspec: {deployment: {podTemplate: {}}}\n")
	// A kind with no Go type.
	f("unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n")

	dir := t.TempDir()
	kustomization := "resources:\n- missing.yaml\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := renderErr(dir); err == nil {
		t.Error("a kustomization naming a missing file built")
	}
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- d.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := renderErr(dir); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("a kustomization rendering a misspelt Deployment: err = %v, want one naming the field", err)
	}
}

// readManifest reads manifests/<path>.
func readManifest(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifestsDir, path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// stripHeader drops the comment lines (and blank lines) a file starts with.
func stripHeader(data []byte) []byte {
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			break
		}
		data = rest
	}
	return data
}
