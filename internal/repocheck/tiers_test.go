package repocheck

import (
	"bytes"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// harnessPath is the import path of the package that starts servers.
const harnessPath = "github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"

// thirdParty names what in harness builds or starts a third-party server;
// the fast tier must call none of it.
var thirdParty = []string{"ThirdPartyBinaries", "PrometheusBinary", "StartPrometheus"}

// makeVariable returns the value of a simple variable of the Makefile, as
// make -p prints it.
func makeVariable(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "make", "-p", "-q", "-r", "-R", "-f", "Makefile", "__no_such_target__")
	cmd.Dir = harness.RepoRoot()
	out, _ := cmd.Output() // -q exits non-zero; the database is printed all the same
	for line := range bytes.Lines(out) {
		if v, ok := strings.CutPrefix(string(line), name+" := "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("the Makefile sets no %s", name)
	return ""
}

// inFastTier reports whether go test ./... (no -tags) compiles f.
func inFastTier(f *ast.File) bool {
	for _, group := range f.Comments {
		if group.Pos() >= f.Package {
			break
		}
		for _, c := range group.List {
			if !constraint.IsGoBuild(c.Text) {
				continue
			}
			expr, err := constraint.Parse(c.Text)
			if err != nil {
				return true // go vet reports it
			}
			return expr.Eval(func(tag string) bool {
				return tag == runtime.GOOS || tag == runtime.GOARCH || tag == "gc" || strings.HasPrefix(tag, "go1.")
			})
		}
	}
	return true
}

// TestTiers: go test ./... at the root is the fast tier. No test file it
// compiles builds or starts a third-party server through harness, or is
// the soak; those carry the Makefile's TEST_TAGS, which make test-unit
// (and so make test), the soak, vet, lint and fuzz-short pass, and make
// check does not.
func TestTiers(t *testing.T) {
	tag := makeVariable(t, "TEST_TAGS")
	root := harness.RepoRoot()
	fset := token.NewFileSet()
	tagged := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // a module of its own
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if !inFastTier(f) {
			tagged++
			return nil
		}
		local := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == harnessPath {
				local = "harness"
				if imp.Name != nil {
					local = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Recv == nil && strings.HasPrefix(n.Name.Name, "TestSoak") {
					t.Errorf("%s: %s is in the fast tier; give the file //go:build %s", rel, n.Name.Name, tag)
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && local != "" && x.Name == local {
					for _, name := range thirdParty {
						if n.Sel.Name == name {
							t.Errorf("%s:%d: harness.%s in the fast tier; give the file //go:build %s",
								rel, fset.Position(n.Pos()).Line, name, tag)
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tagged == 0 {
		t.Errorf("no test file carries //go:build %s: where did the real-server tests go?", tag)
	}

	_, recipes := makeRules(t)
	for target, want := range map[string]string{
		"test-unit":        "-tags $(TEST_TAGS)",
		"test-integration": "-tags $(TEST_TAGS)",
		"soak":             "-tags $(TEST_TAGS)",
		"fuzz-short":       "-tags $(TEST_TAGS)",
		"vet":              "-tags $(TEST_TAGS)",
		"lint":             "--build-tags $(TEST_TAGS)",
	} {
		if !strings.Contains(recipes[target], want) {
			t.Errorf("make %s does not pass %s:\n%s", target, want, recipes[target])
		}
	}
	if r := recipes["test-short"]; strings.Contains(r, "-tags") || !strings.Contains(r, "./...") {
		t.Errorf("make test-short (make check) must be go test ./... without tags:\n%s", r)
	}
}
