package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/relabel"
)

// FuzzParseExtension feeds arbitrary files to the extension decoder: it must
// not panic, must return exactly one of a result and an error, and what it
// accepts must hold only valid Kubernetes names.
func FuzzParseExtension(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &x [*x, *x]\nb: *x\n"))
	f.Add([]byte("---\n---\n...\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ext, err := ParseExtension(data)
		if (ext == nil) == (err == nil) {
			t.Fatalf("ParseExtension returned %v and %v", ext, err)
		}
		if err != nil {
			return
		}
		for svc := range ext.Selection.Services {
			if !relabel.IsNamespaceName(svc.Namespace) || !relabel.IsServiceName(svc.Name) {
				t.Fatalf("accepted invalid Service %v", svc)
			}
		}
		for kong, svc := range ext.Selection.Mappings {
			if kong == "" || !relabel.IsNamespaceName(svc.Namespace) || !relabel.IsServiceName(svc.Name) {
				t.Fatalf("accepted invalid mapping %q → %v", kong, svc)
			}
		}
	})
}
