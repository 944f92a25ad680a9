package test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
)

// lintChart runs helm lint --strict on the chart at dir with values.
func lintChart(t *testing.T, dir, values string) *action.LintResult {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	l := action.NewLint()
	l.Strict = true
	l.Namespace = releaseNamespace
	return l.Run([]string{dir}, vals)
}

// TestLint lints the chart (helm lint --strict) with its defaults, the
// tutorial's values and every render case's values: no error and no
// warning.
func TestLint(t *testing.T) {
	tutorial := renderCase{name: "tutorial-values.yaml", values: readFile(t, tutorialValuesFile)}
	for _, c := range append([]renderCase{{name: "values.yaml"}, tutorial}, renderCases...) {
		t.Run(c.name, func(t *testing.T) {
			res := lintChart(t, chartDir, c.values)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint: %v", err)
			}
		})
	}
}

// TestLintFails shows that the lint above can fail: a copy of the chart
// with a broken template does not pass.
func TestLintFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kong-metrics-sidecar")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "templates", "service.yaml")
	data, err := os.ReadFile(broken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte(strings.Replace(string(data), "{{ include \"kms.fullname\" . }}", "{{ include \"kms.fullname\" . ", 1)), fs.FileMode(0o644)); err != nil {
		t.Fatal(err)
	}
	res := lintChart(t, dir, "")
	if !action.HasWarningsOrErrors(res) {
		t.Fatal("helm lint passed a chart with an unclosed action")
	}
}
