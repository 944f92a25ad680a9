package repocheck

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// outside matches what names a path outside the repository: the shared
// folder that sits beside it on the developers' machines, and a run of
// "../" (or filepath.Join's "..", "..") that climbs past the root.
var (
	sharedFolder = regexp.MustCompile(`\.\.[/"]+\s*,?\s*"?shared\b|\bshared[/]fixtures\b`)
	climbSlash   = regexp.MustCompile(`(?:\.\./)+`)
	climbJoin    = regexp.MustCompile(`(?:"\.\."\s*,\s*)+`)
)

// escapes returns the reasons why content, a file at depth directories
// below the root, reads outside the repository. A relative path climbs out
// when it has more ".." elements than the file has directories above it:
// tests run in their package's directory and scripts cd to their own.
func escapes(content string, depth int) []string {
	var why []string
	for _, m := range sharedFolder.FindAllString(content, -1) {
		why = append(why, "names the shared folder: "+m)
	}
	for _, re := range []*regexp.Regexp{climbSlash, climbJoin} {
		for _, m := range re.FindAllString(content, -1) {
			if n := strings.Count(m, ".."); n > depth {
				why = append(why, fmt.Sprintf("climbs %d levels from %d below the root: %s", n, depth, m))
			}
		}
	}
	return why
}

// checked reports whether the standalone rule covers a file: Go source,
// shell scripts, Makefiles and the CI entry point.
func checked(rel string) bool {
	base := filepath.Base(rel)
	return strings.HasSuffix(base, ".go") || strings.HasSuffix(base, ".sh") ||
		base == "Makefile" || base == "Dockerfile" || rel == filepath.Join(".ci", "run")
}

// TestStandsAlone fails when a Go file, script or Makefile of the
// repository reads the shared folder beside it, or any path above its root:
// a clone with nothing beside it must build and pass its tests.
func TestStandsAlone(t *testing.T) {
	root := harness.RepoRoot()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == ".git" || rel == "bin" || strings.HasPrefix(d.Name(), ".") && rel != ".ci" && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !checked(rel) {
			return nil
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		depth := strings.Count(filepath.ToSlash(rel), "/")
		for _, why := range escapes(string(data), depth) {
			t.Errorf("%s %s", rel, why)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("checked only %d files under %s: is that the repository?", files, root)
	}
}

// TestEscapes pins what counts as reading outside the repository.
func TestEscapes(t *testing.T) {
	up := ".." // kept apart so that this file does not flag itself
	tests := []struct {
		name    string
		content string
		depth   int
		want    int
	}{
		{"shared folder by relative path", `os.ReadFile("` + up + `/` + up + `/shared/x.prom")`, 5, 1},
		{"shared folder by Join", `filepath.Join("` + up + `", "shared", "x")`, 5, 1},
		{"fixtures folder", "cp shared/" + "fixtures/a .", 0, 1},
		{"climbs past the root", `"` + up + `/` + up + `/` + up + `/manifests/x"`, 2, 1},
		{"climbs past the root by Join", `filepath.Join("` + up + `", "` + up + `", "x")`, 1, 1},
		{"stays inside", `"` + up + `/` + up + `/manifests/x"`, 2, 0},
		{"cd to the root", `cd "$(dirname "$0")/` + up + `"`, 1, 0},
		{"no path", `x := y / z`, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := escapes(tt.content, tt.depth); len(got) != tt.want {
				t.Errorf("escapes(%q, %d) = %q, want %d reasons", tt.content, tt.depth, got, tt.want)
			}
		})
	}
}
