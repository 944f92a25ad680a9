package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/golden"
	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

func TestParseExtensionValid(t *testing.T) {
	tests := []struct {
		file      string
		documents int
		services  map[relabel.Service]relabel.Metrics
		mappings  map[string]relabel.Service
	}{
		{"good-tutorial.yaml", 1, map[relabel.Service]relabel.Metrics{{Namespace: "kong", Name: "command"}: relabel.Latency}, nil},
		{"good-multi.yaml", 3, map[relabel.Service]relabel.Metrics{
			{Namespace: "kong", Name: "command"}:    relabel.Latency | relabel.StatusCode,
			{Namespace: "default", Name: "billing"}: relabel.Bandwidth | relabel.UpstreamHealth,
			{Namespace: "default", Name: "echo"}:    relabel.Bandwidth | relabel.UpstreamHealth,
		}, map[string]relabel.Service{"httproute.default.echo.0": {Namespace: "default", Name: "echo"}}},
		{"good-empty.yaml", 0, nil, nil},
		// The route mapping the injector publishes: JSON, which is YAML.
		{"good-routes.json", 1, nil, map[string]relabel.Service{
			"httproute.kong.command.0":    {Namespace: "kong", Name: "command"},
			"grpcroute.default.grpcbin.0": {Namespace: "default", Name: "grpcbin"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			ext, err := LoadExtension(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if ext.Documents != tc.documents {
				t.Errorf("Documents = %d, want %d", ext.Documents, tc.documents)
			}
			if len(ext.Selection.Services) != len(tc.services) {
				t.Errorf("Services = %v, want %v", ext.Selection.Services, tc.services)
			}
			for svc, fams := range tc.services {
				if got := ext.Selection.Services[svc]; got != fams {
					t.Errorf("Services[%v] = %v, want %v", svc, got, fams)
				}
			}
			if len(ext.Selection.Mappings) != len(tc.mappings) {
				t.Errorf("Mappings = %v, want %v", ext.Selection.Mappings, tc.mappings)
			}
			for k, svc := range tc.mappings {
				if got := ext.Selection.Mappings[k]; got != svc {
					t.Errorf("Mappings[%q] = %v, want %v", k, got, svc)
				}
			}
			if _, multi := ext.Selection.MultiBackend["httproute.kong.split.0"]; multi != (tc.file == "good-routes.json") || len(ext.Selection.MultiBackend) > 1 {
				t.Errorf("MultiBackend = %v", ext.Selection.MultiBackend)
			}
			if len(ext.Hash) != 64 {
				t.Errorf("Hash = %q, want a hex SHA-256", ext.Hash)
			}
		})
	}
}

// TestParseExtensionInvalid pins every message to testdata/invalid-*.err.
func TestParseExtensionInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("want at least 10 invalid files, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ext, err := ParseExtension(data)
			if err == nil {
				t.Fatalf("accepted: %+v", ext)
			}
			if ext != nil {
				t.Errorf("returned an Extension with the error")
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestLoadExtensionMissing(t *testing.T) {
	_, err := LoadExtension(filepath.Join(t.TempDir(), "config.yaml"))
	if err == nil || !strings.Contains(err.Error(), "config.yaml") {
		t.Errorf("err = %v, want one naming the file", err)
	}
}

// TestConfigFlags checks that spec.config takes each of relabel's flags by
// its name and selects that flag, and nothing else.
func TestConfigFlags(t *testing.T) {
	command := relabel.Service{Namespace: "kong", Name: "command"}
	f := func(config string, want relabel.Metrics) {
		t.Helper()
		doc := "kind: DataPlaneMetricsExtension\napiVersion: gateway-operator.konghq.com/v1alpha1\n" +
			"metadata: {namespace: kong}\nspec:\n  serviceSelector: {matchNames: [{name: command}]}\n  config: {" + config + "}\n"
		ext, err := ParseExtension([]byte(doc))
		if err != nil {
			t.Fatalf("config {%s}: %v", config, err)
		}
		if got := ext.Selection.Services[command]; got != want {
			t.Errorf("config {%s} selects %s, want %s", config, got, want)
		}
	}
	var all []string
	for _, flag := range relabel.Flags {
		f(flag.String()+": true", flag)
		f(flag.String()+": false", 0)
		all = append(all, flag.String()+": true")
	}
	f(strings.Join(all, ", "), relabel.Latency|relabel.StatusCode|relabel.Bandwidth|relabel.UpstreamHealth)
	f("", 0)
}
