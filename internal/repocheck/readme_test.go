package repocheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// The README is a landing page: short, and its first screen says what the
// project is, how to install the published chart and which image it runs.
const (
	readmeMaxLines   = 150
	firstScreenLines = 25
	maxTableCell     = 200
)

// landingFacts are what the landing page is checked against: the published
// chart and image, from the Makefile's REGISTRY and the chart's appVersion
// (the released version, docs/versioning.md).
type landingFacts struct {
	chartRef, image, version string
}

func readLandingFacts(t *testing.T, root string) landingFacts {
	t.Helper()
	makefile := readRepoFile(t, root, "Makefile")
	reg := regexp.MustCompile(`(?m)^REGISTRY \?= (\S+)$`).FindStringSubmatch(makefile)
	chart := readRepoFile(t, root, filepath.Join("charts", "kong-metrics-sidecar", "Chart.yaml"))
	app := regexp.MustCompile(`(?m)^appVersion: "?([^"\s]+)"?$`).FindStringSubmatch(chart)
	if reg == nil || app == nil {
		t.Fatal("the Makefile's REGISTRY or the chart's appVersion is missing")
	}
	return landingFacts{
		chartRef: "oci://" + reg[1] + "/charts/kong-metrics-sidecar",
		image:    reg[1] + "/kong-metrics-sidecar:" + app[1],
		version:  app[1],
	}
}

func readRepoFile(t *testing.T, root, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// ciTiming matches what only the project's own CI cares about: measured
// durations and cache sizes ("45 min 58 s", "616 s", "6.3 GB").
var ciTiming = regexp.MustCompile(`\b\d+(?:\.\d+)? ?(?:min|s|GB|MB)\b|\bCI\b`)

// landingProblems returns what keeps readme from being the landing page.
func landingProblems(readme string, f landingFacts) []string {
	var problems []string
	lines := strings.Split(strings.TrimSuffix(readme, "\n"), "\n")
	if len(lines) > readmeMaxLines {
		problems = append(problems, fmt.Sprintf("%d lines, more than %d: move reference material to docs/", len(lines), readmeMaxLines))
	}
	screen := strings.Join(lines[:min(firstScreenLines, len(lines))], "\n")
	flat := strings.Join(strings.Fields(screen), " ")
	for _, want := range []struct{ text, why string }{
		{"make demo", "the first command on a fresh machine"},
		{"make test", "the second command on a fresh machine"},
		{"helm install kong-metrics-sidecar " + f.chartRef, "how to install the published chart"},
		{"--version " + f.version, "the released chart's version"},
		{"--create-namespace", "an install that works on a fresh cluster"},
		{f.image, "which image"},
	} {
		if !strings.Contains(flat, want.text) {
			problems = append(problems, fmt.Sprintf("the first %d lines lack %q (%s)", firstScreenLines, want.text, want.why))
		}
	}
	if !regexp.MustCompile(`(?i)\bsidecar\b.*\bKong\b`).MatchString(strings.Join(lines[:min(4, len(lines))], " ")) {
		problems = append(problems, "the first lines do not say what it is (a sidecar for Kong)")
	}
	if m := ciTiming.FindAllString(screen, -1); m != nil {
		problems = append(problems, fmt.Sprintf("the first %d lines hold the project's CI timings or sizes: %q", firstScreenLines, m))
	}
	return problems
}

// TestReadmeIsALandingPage: the README is at most 150 lines, and its first
// screen says what the project is, how to install the published chart,
// which image it runs, with no CI timings; the checks find a README that
// is not one.
func TestReadmeIsALandingPage(t *testing.T) {
	root := harness.RepoRoot()
	f := readLandingFacts(t, root)
	readme := readRepoFile(t, root, "README.md")
	for _, p := range landingProblems(readme, f) {
		t.Errorf("README.md: %s", p)
	}
	for desc, doctor := range map[string]func(string) string{
		"too long":              func(s string) string { return s + strings.Repeat("more\n", readmeMaxLines) },
		"CI timings first":      func(s string) string { return "# x\n\nCI passed in 45 min 58 s.\n" + s },
		"install pushed down":   func(s string) string { return "# x\n" + strings.Repeat("\n", firstScreenLines) + s },
		"no --create-namespace": func(s string) string { return strings.ReplaceAll(s, "--create-namespace", "") },
		"another version":       func(s string) string { return strings.ReplaceAll(s, f.version, "v9.9.9") },
	} {
		if len(landingProblems(doctor(readme), f)) == 0 {
			t.Errorf("a README %s: no problem found", desc)
		}
	}
}

// userDocs are the documents written for users: the README, docs/ and
// CONTRIBUTING.md.
func userDocs(t *testing.T, root string) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(root, "README.md"), filepath.Join(root, "CONTRIBUTING.md"))
	return docs
}

// internalWording is wording that makes sense only inside the project's
// own sessions: say what was chosen, plainly.
var internalWording = regexp.MustCompile(`(?i)where the issues were silent|cannot run here|as a Go module here|\bthe issues?\b \d*\s*(?:said|asked)`)

// TestDocsSayItPlainly: no user-facing document speaks the project's
// internal language.
func TestDocsSayItPlainly(t *testing.T) {
	root := harness.RepoRoot()
	for _, path := range userDocs(t, root) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range internalWording.FindAllString(string(data), -1) {
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s: %q is the project's internal wording; say what was chosen", rel, m)
		}
	}
	if !internalWording.MatchString("## Choices made where the issues were silent") {
		t.Error("internalWording misses the old README's heading")
	}
}

// longCells returns the table cells of a Markdown text longer than limit.
func longCells(text string, limit int) []string {
	var long []string
	for i, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		for _, cell := range strings.Split(strings.Trim(strings.TrimSpace(line), "|"), " | ") {
			if n := len([]rune(strings.TrimSpace(cell))); n > limit {
				long = append(long, fmt.Sprintf("line %d: a cell of %d characters: %.60s…", i+1, n, strings.TrimSpace(cell)))
			}
		}
	}
	return long
}

// TestShortTableCells: the README, the reference pages and CONTRIBUTING.md
// keep table cells readable; details go below the table.
func TestShortTableCells(t *testing.T) {
	root := harness.RepoRoot()
	for _, rel := range []string{"README.md", "CONTRIBUTING.md", filepath.Join("docs", "reference.md"), filepath.Join("docs", "injector.md")} {
		for _, p := range longCells(readRepoFile(t, root, rel), maxTableCell) {
			t.Errorf("%s %s", rel, p)
		}
	}
	if len(longCells("| a | "+strings.Repeat("x", maxTableCell+1)+" |", maxTableCell)) != 1 {
		t.Error("longCells misses a long cell")
	}
}

// tutorialStart is the one statement of where the tutorial's steps start,
// the same in the README and docs/install.md.
const tutorialStart = "start where the tutorial's prerequisites end"

// TestTutorialStartsAtOnePlace: the README and docs/install.md say the
// same about where the tutorial's steps start.
func TestTutorialStartsAtOnePlace(t *testing.T) {
	root := harness.RepoRoot()
	for _, rel := range []string{"README.md", filepath.Join("docs", "install.md")} {
		text := strings.Join(strings.Fields(readRepoFile(t, root, rel)), " ")
		if !strings.Contains(text, tutorialStart) {
			t.Errorf("%s does not say that the tutorial's steps %s", rel, tutorialStart)
		}
		for _, other := range []string{`works unchanged from "Install`, `tutorial works from "Install`} {
			if strings.Contains(text, other) {
				t.Errorf("%s names another starting point: %q", rel, other)
			}
		}
	}
}
