package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's root, from this module's directory.
var repoRoot = filepath.Join("..", "..")

// installDocs are the documents whose commands install something: each
// command in them must work against the chart and manifests as they are.
var installDocs = []string{"README.md", filepath.Join("docs", "install.md"), filepath.Join("docs", "keda.md")}

// docCommand is one shell command a document tells its reader to run.
type docCommand struct {
	line   int      // where it starts in the document
	fenced bool     // in a fenced code block, not a code span in the text
	args   []string // its words, quotes removed
}

func (c docCommand) String() string { return strings.Join(c.args, " ") }

var (
	fence    = regexp.MustCompile("^\\s*```")
	codeSpan = regexp.MustCompile("`([^`]+)`")
)

// docCommands returns the helm and kubectl commands of a Markdown
// document: every line of its fenced blocks (continuation lines joined,
// comments cut) and every code span of its text that starts with "helm "
// or "kubectl ". A code span may run over a line break, as Markdown allows.
func docCommands(text string) ([]docCommand, error) {
	var cmds []docCommand
	lines := strings.Split(text, "\n")
	var prose []string // the text outside fences, one entry per line
	inFence := false
	var pending string
	pendingLine := 0
	for i, line := range lines {
		if fence.MatchString(line) {
			inFence = !inFence
			prose = append(prose, "")
			continue
		}
		if !inFence {
			prose = append(prose, line)
			continue
		}
		prose = append(prose, "")
		body := strings.TrimSpace(line)
		if pending == "" {
			pendingLine = i + 1
		}
		if cont, ok := strings.CutSuffix(body, "\\"); ok {
			pending += cont + " "
			continue
		}
		body, pending = pending+body, ""
		words, err := shellWords(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", pendingLine, err)
		}
		if len(words) > 0 && (words[0] == "helm" || words[0] == "kubectl") {
			cmds = append(cmds, docCommand{line: pendingLine, fenced: true, args: words})
		}
	}
	// Code spans: over the text outside fences, paragraph by paragraph.
	joined := strings.Join(prose, "\n")
	for _, m := range codeSpan.FindAllStringSubmatchIndex(joined, -1) {
		span := joined[m[2]:m[3]]
		if strings.Contains(span, "\n\n") {
			continue
		}
		span = strings.Join(strings.Fields(span), " ")
		if !strings.HasPrefix(span, "helm ") && !strings.HasPrefix(span, "kubectl ") {
			continue
		}
		words, err := shellWords(span)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", strings.Count(joined[:m[2]], "\n")+1, err)
		}
		cmds = append(cmds, docCommand{line: strings.Count(joined[:m[2]], "\n") + 1, args: words})
	}
	slices.SortStableFunc(cmds, func(a, b docCommand) int { return a.line - b.line })
	return cmds, nil
}

// shellWords splits a command line as a POSIX shell does for the quoting
// the documents use: single and double quotes, backslash escapes outside
// single quotes, and a comment from an unquoted "#" that starts a word.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for i := 0; i < len(s); i++ {
		c := rune(s[i])
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s):
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// helmFlags are the flags of helm install and helm upgrade the documents
// may use, and whether each takes a value (Helm 3's names; a flag not
// listed is a typo or one the documents have no business with).
var helmFlags = map[string]bool{
	"--namespace": true, "-n": true, "--create-namespace": false, "--version": true,
	"--values": true, "-f": true, "--set": true, "--set-string": true, "--reuse-values": false,
	"--install": false, "--wait": false, "--timeout": true, "--atomic": false, "--dry-run": false,
}

// helmCommand is a parsed helm install or helm upgrade.
type helmCommand struct {
	verb, release, chart, namespace, version string
	install, createNamespace                 bool
	valueFiles, sets, setStrings             []string
}

// errMention is a helm command with neither release nor chart, such as
// `helm upgrade --dry-run=server` in the text: a mention, not a command.
var errMention = errors.New("helm command without a release or chart")

func parseHelm(args []string) (helmCommand, error) {
	h := helmCommand{verb: args[1], install: args[1] == "install"}
	var positional []string
	for i := 2; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(a, "=")
		takes, known := helmFlags[name]
		if !known {
			return h, fmt.Errorf("helm %s has no flag %s here", h.verb, name)
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				return h, fmt.Errorf("flag %s needs a value", name)
			}
			i++
			value = args[i]
		}
		switch name {
		case "--namespace", "-n":
			h.namespace = value
		case "--create-namespace":
			h.createNamespace = true
		case "--version":
			h.version = value
		case "--values", "-f":
			h.valueFiles = append(h.valueFiles, value)
		case "--set":
			h.sets = append(h.sets, value)
		case "--set-string":
			h.setStrings = append(h.setStrings, value)
		case "--install":
			h.install = true
		}
	}
	if len(positional) == 0 {
		return h, errMention
	}
	if len(positional) != 2 {
		return h, fmt.Errorf("helm %s takes a release and a chart, got %q", h.verb, positional)
	}
	h.release, h.chart = positional[0], positional[1]
	return h, nil
}

// project is what the commands are checked against: the chart's name and
// version, where it is published, and its default values.
type project struct {
	chart     *chart.Chart
	chartPath string // charts/kong-metrics-sidecar, from the root
	ociRef    string // oci://<Makefile's REGISTRY>/charts/<chart name>
	version   string // the chart's appVersion: the released version
	defaults  map[string]any
}

func loadProject(t *testing.T) project {
	t.Helper()
	c := loadChart(t)
	makefile := readFile(t, filepath.Join(repoRoot, "Makefile"))
	m := regexp.MustCompile(`(?m)^REGISTRY \?= (\S+)$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile sets no REGISTRY")
	}
	return project{
		chart:     c,
		chartPath: "charts/" + c.Metadata.Name,
		ociRef:    "oci://" + m[1] + "/charts/" + c.Metadata.Name,
		version:   c.Metadata.AppVersion,
		defaults:  c.Values,
	}
}

// checkDocCommands returns what is wrong with a document's commands: a
// path that does not exist, a kustomization that does not build, a helm
// flag or value the chart does not have, values the chart rejects, an
// install into a namespace nothing has created, the published chart
// without the released version, or the tutorial's ConfigMap applied with
// kubectl after a helm command that already made it.
func checkDocCommands(t *testing.T, p project, cmds []docCommand) []string {
	t.Helper()
	var problems []string
	fail := func(c docCommand, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: %s: %s", c.line, c, fmt.Sprintf(format, args...)))
	}
	created := map[string]bool{} // namespaces an earlier command made
	chartMadeConfigMap := false  // an earlier helm command rendered the extension ConfigMap
	for _, c := range cmds {
		if slices.ContainsFunc(c.args, func(a string) bool {
			return strings.ContainsAny(a, "<>…") || strings.Contains(a, "...")
		}) {
			continue // a template with placeholders, not a command to run
		}
		switch {
		case len(c.args) >= 4 && c.args[0] == "kubectl" && c.args[1] == "create" && (c.args[2] == "namespace" || c.args[2] == "ns"):
			created[c.args[3]] = true
		case len(c.args) >= 2 && c.args[0] == "kubectl" && (c.args[1] == "apply" || c.args[1] == "delete"):
			for i := 2; i < len(c.args); i++ {
				switch flag := c.args[i]; {
				case (flag == "-k" || flag == "-f") && i+1 < len(c.args):
					i++
					path := c.args[i]
					if strings.Contains(path, "://") {
						continue
					}
					if _, err := os.Stat(filepath.Join(repoRoot, path)); err != nil {
						fail(c, "%s does not exist", path)
						continue
					}
					if flag != "-k" {
						continue
					}
					objs, err := kustomizeObjects(filepath.Join(repoRoot, path))
					if err != nil {
						fail(c, "kustomize build %s: %v", path, err)
						continue
					}
					if c.fenced && c.args[1] == "apply" && chartMadeConfigMap && slices.Contains(objs, "ConfigMap/kong-metrics-sidecar") {
						fail(c, "applies ConfigMap kong-metrics-sidecar, which the chart's extension values made already")
					}
				}
			}
		case len(c.args) >= 2 && c.args[0] == "helm" && (c.args[1] == "install" || c.args[1] == "upgrade"):
			h, err := parseHelm(c.args)
			if errors.Is(err, errMention) && !c.fenced {
				continue
			}
			if err != nil {
				fail(c, "%v", err)
				continue
			}
			problems = append(problems, checkHelm(p, c, h, created, &chartMadeConfigMap)...)
			if h.createNamespace && h.namespace != "" {
				created[h.namespace] = true
			}
		}
	}
	return problems
}

// checkHelm checks one helm install or upgrade.
func checkHelm(p project, c docCommand, h helmCommand, created map[string]bool, madeConfigMap *bool) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: %s: %s", c.line, c, fmt.Sprintf(format, args...)))
	}
	for _, f := range h.valueFiles {
		if _, err := os.Stat(filepath.Join(repoRoot, f)); err != nil {
			fail("values file %s does not exist", f)
		}
	}
	if h.install && !h.createNamespace && h.namespace != "" && !created[h.namespace] {
		fail("installs into namespace %s, which nothing before it creates: add --create-namespace", h.namespace)
	}
	ours := h.chart == p.chartPath || h.chart == p.ociRef
	switch {
	case strings.HasPrefix(h.chart, "oci://") && h.chart != p.ociRef:
		fail("the published chart is %s", p.ociRef)
	case !ours && strings.HasPrefix(h.chart, "charts/"):
		fail("the chart is at %s", p.chartPath)
	}
	if !ours {
		return problems
	}
	if h.namespace == "" {
		fail("names no --namespace; the chart is installed into its own")
	}
	if h.chart == p.ociRef && h.version != p.version {
		fail("the published chart needs --version %s (the chart's appVersion), not %q", p.version, h.version)
	}
	if h.chart == p.chartPath && h.version != "" {
		fail("--version with the chart of the checkout")
	}
	var files []string
	for _, f := range h.valueFiles {
		files = append(files, filepath.Join(repoRoot, f))
	}
	opts := values.Options{ValueFiles: files, Values: h.sets, StringValues: h.setStrings}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		fail("values: %v", err)
		return problems
	}
	for _, key := range unknownKeys(vals, p.defaults, "") {
		fail("value %s is not in values.yaml", key)
	}
	doc, err := yaml.Marshal(vals)
	if err != nil {
		fail("values: %v", err)
		return problems
	}
	r, err := renderErr(p.chart, string(doc), renderOptions{apiVersions: []string{monitoringAPI}})
	if err != nil {
		fail("the chart does not render with these values: %v", err)
		return problems
	}
	for _, o := range r.objs {
		if o.gvk.Kind == "ConfigMap" && o.name == "kong-metrics-sidecar" {
			*madeConfigMap = true
		}
	}
	return problems
}

// unknownKeys returns the keys of vals that the chart's defaults do not
// have, as dotted paths. Under a default that is an empty map (labels,
// annotations, selectors) any key is the user's; lists are not entered.
func unknownKeys(vals, defaults map[string]any, prefix string) []string {
	var unknown []string
	for k, v := range vals {
		d, ok := defaults[k]
		if !ok {
			unknown = append(unknown, prefix+k)
			continue
		}
		sub, isMap := v.(map[string]any)
		dsub, dIsMap := d.(map[string]any)
		if isMap && dIsMap && len(dsub) > 0 {
			unknown = append(unknown, unknownKeys(sub, dsub, prefix+k+".")...)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// kustomizeObjects builds a kustomization and returns its objects as
// "Kind/name".
func kustomizeObjects(dir string) ([]string, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	var objs []string
	for _, r := range m.Resources() {
		objs = append(objs, r.GetKind()+"/"+r.GetName())
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects")
	}
	return objs, nil
}

// TestDocCommands keeps every helm and kubectl command of the README and
// docs/install.md runnable against the chart and the manifests as they
// are: see checkDocCommands.
func TestDocCommands(t *testing.T) {
	p := loadProject(t)
	for _, doc := range installDocs {
		t.Run(filepath.Base(doc), func(t *testing.T) {
			cmds, err := docCommands(readFile(t, filepath.Join(repoRoot, doc)))
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			installs := 0
			for _, c := range cmds {
				if len(c.args) > 3 && c.args[0] == "helm" && (c.args[1] == "install" || c.args[1] == "upgrade") {
					installs++
				}
			}
			if installs == 0 {
				t.Fatalf("%s: no helm install or upgrade found among %d commands: is the extraction broken?", doc, len(cmds))
			}
			for _, c := range cmds {
				t.Logf("line %d: %s", c.line, c)
			}
			for _, problem := range checkDocCommands(t, p, cmds) {
				t.Errorf("%s %s", doc, problem)
			}
		})
	}
}

// TestDocCommandsFail: each document under testdata/doccommands holds
// commands with one kind of mistake; the problems found are its golden
// file.
func TestDocCommandsFail(t *testing.T) {
	p := loadProject(t)
	cases, err := filepath.Glob(filepath.Join("testdata", "doccommands", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases in testdata/doccommands")
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".md")
		t.Run(name, func(t *testing.T) {
			cmds, err := docCommands(readFile(t, path))
			if err != nil {
				t.Fatal(err)
			}
			problems := checkDocCommands(t, p, cmds)
			var b strings.Builder
			for _, problem := range problems {
				fmt.Fprintln(&b, problem)
			}
			if name != "good" && len(problems) == 0 {
				t.Errorf("%s: no problem found", path)
			}
			golden(t, strings.TrimSuffix(path, ".md")+".golden", b.String())
		})
	}
}

// TestShellWords pins the quoting docCommands understands.
func TestShellWords(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{`kubectl apply -k manifests/injector`, []string{"kubectl", "apply", "-k", "manifests/injector"}},
		{`kubectl patch gc kong -p '{"a": "b c"}'`, []string{"kubectl", "patch", "gc", "kong", "-p", `{"a": "b c"}`}},
		{`helm install x "a b" # a comment`, []string{"helm", "install", "x", "a b"}},
		{`kubectl get x -o jsonpath='{.a#b}'`, []string{"kubectl", "get", "x", "-o", "jsonpath={.a#b}"}},
		{`a\ b c`, []string{"a b", "c"}},
	} {
		got, err := shellWords(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := shellWords(`echo 'open`); err == nil {
		t.Error("an unterminated quote: no error")
	}
}
