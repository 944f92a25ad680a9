package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestLogMessageStyle: both programs log in one style, a message that
// starts in lower case, as Go writes error strings, unless its first word
// is an acronym (TLS, SIGHUP) or Kong's name. It reads every product
// source file both binaries are built from (the main module without its
// tests, test support and test modules).
func TestLogMessageStyle(t *testing.T) {
	root := filepath.Join("..", "..")
	skip := map[string]bool{"integration": true, "release": true, "manifests": true, "charts": true, "scripts": true, "docs": true, ".git": true, "testdata": true}
	fset := token.NewFileSet()
	calls := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			arg := 0
			switch sel.Sel.Name {
			case "Debug", "Info", "Warn", "Error":
			case "DebugContext", "InfoContext", "WarnContext", "ErrorContext":
				arg = 1
			default:
				return true
			}
			if len(call.Args) <= arg {
				return true
			}
			lit, ok := call.Args[arg].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			msg, err := strconv.Unquote(lit.Value)
			if err != nil || msg == "" {
				return true
			}
			calls++
			if !styled(msg) {
				t.Errorf("%s: log message %q: start it in lower case (acronyms and Kong excepted)", fset.Position(lit.Pos()), msg)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 20 {
		t.Fatalf("found %d log calls; the walk missed the sources", calls)
	}
}

// styled reports whether msg starts as both programs' messages do.
func styled(msg string) bool {
	word, _, _ := strings.Cut(msg, " ")
	word = strings.TrimRight(strings.TrimSuffix(strings.TrimRight(word, ":;,"), "'s"), ":;,")
	r := []rune(word)
	switch {
	case !unicode.IsUpper(r[0]):
		return true
	case word == "Kong":
		return true
	case len(r) > 1 && unicode.IsUpper(r[1]):
		return true // an acronym: TLS, SIGHUP
	}
	return false
}
