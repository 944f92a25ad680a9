package repocheck

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// fencedBlocks returns the fenced code blocks of a Markdown text in the
// given language, their lines as written (a list item's indent removed).
func fencedBlocks(text, lang string) []string {
	re := regexp.MustCompile("(?ms)^( *)```" + regexp.QuoteMeta(lang) + "\n(.*?)^ *```$")
	var blocks []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		indent := m[1]
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(m[2], "\n"), "\n") {
			lines = append(lines, strings.TrimPrefix(l, indent))
		}
		blocks = append(blocks, strings.Join(lines, "\n")+"\n")
	}
	return blocks
}

// kedaDocProblems compares docs/keda.md's ScaledObject and query with the
// ScaledObject manifests/examples/keda holds, which TestKEDA runs.
func kedaDocProblems(doc, manifest string) []string {
	var problems []string
	var want map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &want); err != nil {
		return []string{"manifests/examples/keda/scaledobject.yaml: " + err.Error()}
	}
	found := false
	for _, block := range fencedBlocks(doc, "yaml") {
		var got map[string]any
		if yaml.Unmarshal([]byte(block), &got) != nil || got["kind"] != "ScaledObject" {
			continue
		}
		found = true
		if !reflect.DeepEqual(got, want) {
			problems = append(problems, "the ScaledObject differs from manifests/examples/keda/scaledobject.yaml")
		}
	}
	if !found {
		problems = append(problems, "no ScaledObject in a yaml block")
	}
	query := ""
	if triggers, ok := dig(want, "spec", "triggers").([]any); ok && len(triggers) == 1 {
		query, _ = dig(triggers[0], "metadata", "query").(string)
	}
	promql := fencedBlocks(doc, "promql")
	switch {
	case query == "":
		problems = append(problems, "the manifest's ScaledObject has no single trigger with a query")
	case len(promql) == 0:
		problems = append(problems, "no promql block shows the query")
	}
	for _, q := range promql {
		if strings.TrimSpace(q) != strings.TrimSpace(query) {
			problems = append(problems, "a promql block differs from the ScaledObject's query:\n"+q)
		}
	}
	return problems
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestKEDADocShowsTheTestedQuery: the migration guide shows the
// ScaledObject and the query the end-to-end test proves, as they are.
func TestKEDADocShowsTheTestedQuery(t *testing.T) {
	root := harness.RepoRoot()
	doc := readRepoFile(t, root, "docs/keda.md")
	manifest := readRepoFile(t, root, "manifests/examples/keda/scaledobject.yaml")
	for _, p := range kedaDocProblems(doc, manifest) {
		t.Errorf("docs/keda.md: %s", p)
	}
	for desc, c := range map[string]struct{ old, new string }{
		"another threshold": {`threshold: "40"`, `threshold: "50"`},
		"another query":     {"  and on ()\n  count(", "  and on ()\n  sum("},
	} {
		doctored := strings.ReplaceAll(doc, c.old, c.new)
		if doctored == doc {
			t.Fatalf("%s: docs/keda.md has no %q", desc, c.old)
		}
		if len(kedaDocProblems(doctored, manifest)) == 0 {
			t.Errorf("%s: no problem found", desc)
		}
	}
}
