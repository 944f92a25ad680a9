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
		services  map[relabel.Service]relabel.Family
		mappings  map[string]relabel.Service
	}{
		{"good-tutorial.yaml", 1, map[relabel.Service]relabel.Family{{Namespace: "kong", Name: "command"}: relabel.Latency}, nil},
		{"good-multi.yaml", 3, map[relabel.Service]relabel.Family{
			{Namespace: "kong", Name: "command"}:    relabel.Latency | relabel.StatusCode,
			{Namespace: "default", Name: "billing"}: relabel.Bandwidth | relabel.UpstreamHealth,
			{Namespace: "default", Name: "echo"}:    relabel.Bandwidth | relabel.UpstreamHealth,
		}, map[string]relabel.Service{"httproute.default.echo.0": {Namespace: "default", Name: "echo"}}},
		{"good-empty.yaml", 0, nil, nil},
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
