package routemap

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/config"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
)

// readRoutes reads a YAML list of route objects as the API server stores them.
func readRoutes(t testing.TB, path string) []Route {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := yaml.Unmarshal(data, &objs); err != nil {
		t.Fatal(err)
	}
	var routes []Route
	for _, o := range objs {
		r, err := FromObject(&unstructured.Unstructured{Object: o})
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	return routes
}

func decode(t testing.TB, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// TestBuild: each testdata/<case>.yaml's routes give the mapping in
// testdata/<case>.golden (the published document, indented).
func TestBuild(t *testing.T) {
	for _, name := range []string{"tutorial", "rules"} {
		t.Run(name, func(t *testing.T) {
			m := Build(readRoutes(t, filepath.Join("testdata", name+".yaml")))
			data, err := Encode(m, "kong-metrics-sidecar-routes")
			if err != nil {
				t.Fatal(err)
			}
			var doc any
			if err := json.Unmarshal(decode(t, data), &doc); err != nil {
				t.Fatal(err)
			}
			pretty, _ := json.MarshalIndent(doc, "", "  ")
			golden.Check(t, filepath.Join("testdata", name+".golden"), append(pretty, '\n'))
		})
	}
}

// TestEncodeIsDeterministic: the same routes in another order give the
// same bytes, so two publishers agree and nothing unchanged is written.
func TestEncodeIsDeterministic(t *testing.T) {
	routes := readRoutes(t, filepath.Join("testdata", "rules.yaml"))
	a, err := Encode(Build(routes), "cm")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		reversed := make([]Route, len(routes))
		for j, r := range routes {
			reversed[len(routes)-1-j] = r
		}
		routes = reversed
		b, err := Encode(Build(routes), "cm")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("run %d: encoding differs", i)
		}
	}
}

// manyRoutes returns n HTTPRoutes over 100 namespaces, one rule each, with
// names as long as a platform team's.
func manyRoutes(n int) []Route {
	routes := make([]Route, n)
	port, weight := int32(8080), int32(1)
	for i := range routes {
		ns := fmt.Sprintf("team-%02d-production", i%100)
		svc := fmt.Sprintf("service-%05d-api", i)
		key, _ := json.Marshal(map[string]any{"group": "", "kind": "Service", "name": svc, "port": port, "weight": weight})
		routes[i] = Route{Kind: "HTTPRoute", Namespace: ns, Name: fmt.Sprintf("route-%05d-public", i),
			Rules: []Rule{{BackendRefs: []BackendRef{{Name: svc, Port: &port, Weight: &weight, Key: string(key)}}}}}
	}
	return routes
}

// BenchmarkPublish10000Routes builds and encodes the mapping of 10,000
// HTTPRoutes, as the Publisher does on each change. It reports the
// document each sidecar loads (compressed, and as JSON) against the
// ConfigMap's 1 MiB limit; the baseline in the same run is the JSON of the
// routes themselves as the API server lists them.
func BenchmarkPublish10000Routes(b *testing.B) {
	routes := manyRoutes(10_000)
	listed, _ := json.Marshal(routes)
	var data []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		data, err = Encode(Build(routes), "kong-metrics-sidecar-routes")
		if err != nil {
			b.Fatal(err)
		}
	}
	plain := decode(b, data)
	b.ReportMetric(float64(len(data)), "gzip-bytes")
	b.ReportMetric(float64(len(plain)), "json-bytes")
	b.ReportMetric(float64(len(data))/float64(1<<20), "of-configmap-limit")
	b.ReportMetric(float64(len(data))/float64(len(listed)), "gzip/routes-json")
}

// TestSidecarReadsIt: the sidecar's config.ParseRoutes reads what Encode
// writes, with every mapping and multi-backend name.
func TestSidecarReadsIt(t *testing.T) {
	m := Build(readRoutes(t, filepath.Join("testdata", "rules.yaml")))
	data, err := Encode(m, "kong-metrics-sidecar-routes")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := config.ParseRoutes(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes.Selection.Mappings) != len(m.Services) || len(routes.Selection.MultiBackend) != len(m.MultiBackend) {
		t.Fatalf("the sidecar read %d mappings and %d multi-backend names, Build made %d and %d",
			len(routes.Selection.Mappings), len(routes.Selection.MultiBackend), len(m.Services), len(m.MultiBackend))
	}
	for kong, svc := range m.Services {
		if got := routes.Selection.Mappings[kong]; got.Namespace != svc.Namespace || got.Name != svc.Name {
			t.Errorf("%s: the sidecar reads %v, Build made %v", kong, got, svc)
		}
	}
}

// BenchmarkSidecarLoads10000Routes is each sidecar's side of the same
// mapping: decompress and parse (config.ParseRoutes), as on every change.
func BenchmarkSidecarLoads10000Routes(b *testing.B) {
	data, err := Encode(Build(manyRoutes(10_000)), "kong-metrics-sidecar-routes")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.ParseRoutes(data); err != nil {
			b.Fatal(err)
		}
	}
}
