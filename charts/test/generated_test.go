package test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/charts/test/manifestgen"
)

// generate runs manifestgen on the chart; it fails the test if it fails.
func generate(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := manifestgen.Generate(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestManifestsCurrent: the files under manifests/ that the chart renders
// are the ones `make manifests` writes now. It regenerates them into a
// temporary directory (as make manifests would write them) and names each
// checked-in file that differs, is missing, or was generated and no longer
// is. Generating twice gives the same bytes.
func TestManifestsCurrent(t *testing.T) {
	files := generate(t)
	if again := generate(t); !mapsEqual(files, again) {
		t.Fatal("two runs of the generator gave different files")
	}
	dir := t.TempDir()
	if err := manifestgen.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	// What was written is current by the same check.
	if stale, err := manifestgen.Stale(dir, files); err != nil || len(stale) > 0 {
		t.Fatalf("the generator's own output is stale: %q %v", stale, err)
	}
	stale, err := manifestgen.Stale(manifestsDir, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stale {
		path, _, _ := strings.Cut(s, ":")
		diff := ""
		if checkedIn, err := os.ReadFile(filepath.Join(manifestsDir, path)); err == nil {
			written, err := os.ReadFile(filepath.Join(dir, path))
			if err != nil {
				t.Fatal(err)
			}
			diff = "\n" + cmp.Diff(strings.Split(string(checkedIn), "\n"), strings.Split(string(written), "\n")) + "(-checked in +generated)"
		}
		t.Errorf("manifests/%s: run make manifests (the chart is their source)%s", s, diff)
	}
	// Every generated file starts with the header that says so.
	for p, data := range files {
		if !bytes.HasPrefix(data, []byte(manifestgen.Header+"\n")) {
			t.Errorf("%s does not start with the header %q", p, manifestgen.Header)
		}
	}
}

// TestManifestsStaleFails: the check above names a file changed by hand, a
// generated file deleted and a generated file the generator no longer
// makes, and leaves files written by hand alone; writing again (make
// manifests) repairs all three.
func TestManifestsStaleFails(t *testing.T) {
	files := generate(t)
	dir := t.TempDir()
	if err := manifestgen.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	handWritten := filepath.Join(dir, "injector", "namespace.yaml")
	if err := os.WriteFile(handWritten, []byte("# by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "injector", "deployment.yaml")
	data, err := os.ReadFile(edited)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, bytes.Replace(data, []byte("replicas: 2"), []byte("replicas: 3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "monitoring", "podmonitor", "podmonitor.yaml")); err != nil {
		t.Fatal(err)
	}
	leftOver := filepath.Join(dir, "injector", "old.yaml")
	if err := os.WriteFile(leftOver, []byte(manifestgen.Header+"\nkind: Service\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	stale, err := manifestgen.Stale(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"injector/deployment.yaml: differs from the chart's rendering",
		"monitoring/podmonitor/podmonitor.yaml: missing",
		"injector/old.yaml: generated, but no longer from the chart",
	}
	if !slices.Equal(stale, want) {
		t.Errorf("stale %q, want %q", stale, want)
	}

	if err := manifestgen.Write(dir, files); err != nil {
		t.Fatal(err)
	}
	if stale, err := manifestgen.Stale(dir, files); err != nil || len(stale) > 0 {
		t.Errorf("after writing again: stale %q, %v; want none", stale, err)
	}
	if _, err := os.Stat(leftOver); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want it removed", leftOver, err)
	}
	if got, err := os.ReadFile(handWritten); err != nil || string(got) != "# by hand\n" {
		t.Errorf("the hand-written file: %q %v, want it untouched", got, err)
	}
}

// TestManifestsGeneratedAsKustomizeNeeds: the generated files carry none
// of Helm's labels (a kustomize install is no Helm release) and the
// injector's Deployment leaves the image's tag to kustomization.yaml.
func TestManifestsGeneratedAsKustomizeNeeds(t *testing.T) {
	files := generate(t)
	for p, data := range files {
		for _, l := range helmLabels {
			if bytes.Contains(data, []byte(l+":")) {
				t.Errorf("%s has Helm's label %s", p, l)
			}
		}
	}
	c := loadChart(t)
	dep := string(files["injector/deployment.yaml"])
	if tagged := ":" + c.Metadata.AppVersion; strings.Contains(dep, tagged) {
		t.Errorf("injector/deployment.yaml names the image with the tag %s; kustomization.yaml sets it", tagged)
	}
}

func mapsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
