package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/kong-metrics-sidecar/kong-metrics-sidecar"

// forbidden are the packages the webhook must not link: the sidecar's
// extension file, rewriter, Admin API client and proxy. (The YAML parsers
// are not among them: client-go's kubeconfig loading, which the route
// mapping needs out of a cluster, links them.)
var forbidden = []string{
	module + "/config",
	module + "/relabel",
	module + "/kongadmin",
	module + "/proxy",
}

// TestInjectorDependencies keeps the webhook apart from the sidecar: the
// injector's binary links none of the sidecar's packages.
func TestInjectorDependencies(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/kong-metrics-injector")
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/kong-metrics-injector: %v\n%s", err, &stderr)
	}
	if bad := forbiddenDeps(out); len(bad) > 0 {
		t.Errorf("kong-metrics-injector links %s; inject/ and the injector's main must not import them", strings.Join(bad, ", "))
	}
}

// TestForbiddenDeps checks the check itself: it finds each forbidden
// package and passes over a neighbour whose name merely starts the same.
func TestForbiddenDeps(t *testing.T) {
	list := strings.Join(append([]string{"fmt", module + "/configx", module + "/inject"}, forbidden...), "\n") + "\n"
	if got := forbiddenDeps([]byte(list)); strings.Join(got, " ") != strings.Join(forbidden, " ") {
		t.Errorf("forbiddenDeps found %q, want %q", got, forbidden)
	}
}

// forbiddenDeps returns the packages of list, go list's output, that are
// forbidden or below a forbidden package.
func forbiddenDeps(list []byte) []string {
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		pkg := sc.Text()
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				bad = append(bad, pkg)
			}
		}
	}
	return bad
}

// repoRoot returns the directory of the main module's go.mod, the nearest
// above the test's directory whose first line declares the module.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(string(data), "\n"); strings.TrimSpace(first) == "module "+module {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod of module %s above the test's directory", module)
		}
		dir = parent
	}
}
