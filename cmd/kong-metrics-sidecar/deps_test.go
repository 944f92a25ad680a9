package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSidecarDependencies keeps the Kubernetes API client, which only the
// injector's route mapping uses, out of the sidecar's binary.
func TestSidecarDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "k8s.io/client-go/") || strings.HasSuffix(pkg, "/kong-metrics-sidecar/routemap") {
			t.Errorf("kong-metrics-sidecar links %s", pkg)
		}
	}
	if !strings.Contains(string(out), "/kong-metrics-sidecar/relabel") {
		t.Error("go list -deps does not list the sidecar's own packages: the check checks nothing")
	}
}
