package repocheck

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// makeRules reads the Makefile's rules as make itself does (its database,
// printed by make -p without running anything): each target's
// prerequisites and recipe.
func makeRules(t *testing.T) (prereqs map[string][]string, recipes map[string]string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "make", "-p", "-q", "-r", "-R", "-f", "Makefile", "__no_such_target__")
	cmd.Dir = harness.RepoRoot()
	out, _ := cmd.Output() // -q exits non-zero; the database is printed all the same
	if !bytes.Contains(out, []byte("# Files")) {
		t.Fatalf("make -p printed no database:\n%s", out)
	}
	prereqs, recipes = map[string][]string{}, map[string]string{}
	files := false
	var target string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "# Files":
			files = true
		case !files:
		case strings.HasPrefix(line, "\t") && target != "":
			recipes[target] += line + "\n"
		case line == "":
			target = ""
		case strings.HasPrefix(line, "#"):
			// make's notes on the target, between it and its recipe
		default:
			name, deps, ok := strings.Cut(line, ":")
			if !ok || strings.ContainsAny(name, " =$") || strings.HasPrefix(deps, "=") {
				target = ""
				continue
			}
			target = name
			prereqs[name] = append(prereqs[name], strings.Fields(deps)...)
		}
	}
	return prereqs, recipes
}

// needs returns every target that target depends on, directly or not.
func needs(prereqs map[string][]string, target string) []string {
	var all []string
	var walk func(string)
	walk = func(t string) {
		for _, p := range prereqs[t] {
			if !slices.Contains(all, p) {
				all = append(all, p)
				walk(p)
			}
		}
	}
	walk(target)
	return all
}

// TestMakePrerequisites: under make -j, targets run as soon as their own
// prerequisites are done, so every target that runs a real server must
// name the target that builds it, and make test must install nothing
// beside the tests (it once ran an apt-get install of Prometheus as a
// sibling of the tests that needed it).
func TestMakePrerequisites(t *testing.T) {
	prereqs, recipes := makeRules(t)
	for _, tt := range []struct{ target, needs string }{
		{"test-unit", "prometheus-bin"},
		{"soak", "prometheus-bin"},
		{"e2e", "bins"},
		{"test-chart", "bins"},
		{"lint-bins", "bins"},
		{"test", "bins"},
	} {
		if got := needs(prereqs, tt.target); !slices.Contains(got, tt.needs) {
			t.Errorf("make %s needs %s first, but its prerequisites are %q", tt.target, tt.needs, got)
		}
	}
	for target, recipe := range recipes {
		if strings.Contains(recipe, "with-bins") || strings.Contains(recipe, "bin/test-bins.env") || strings.Contains(recipe, "bin/prometheus.env") {
			if target == "bins" || target == "prometheus-bin" || strings.Contains(recipe, "scripts/build-test-bins.sh") {
				continue // builds them itself
			}
			got := needs(prereqs, target)
			if !slices.Contains(got, "bins") && !slices.Contains(got, "prometheus-bin") {
				t.Errorf("make %s reads the test binaries' paths but does not depend on bins or prometheus-bin", target)
			}
		}
	}
	for _, target := range append(needs(prereqs, "test"), "test") {
		for _, word := range []string{"apt-get", "sudo", "pkill", "killall", "install-deps"} {
			if strings.Contains(recipes[target], word) {
				t.Errorf("make %s runs %s: make test must need no root and end no process by name", target, word)
			}
		}
	}
}
