// Package repo locates the repository's root for tests that read files
// outside their own package directory, so that no test has to count "../"
// and nothing reads above the root.
package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Root returns the directory of the main module's go.mod: the nearest
// ancestor of the working directory (a test's package directory) whose
// go.mod declares the main module. Nested test modules (integration/e2e,
// manifests/test) have go.mod files of their own, which it passes over.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repository root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isMainModule(data) {
			return dir, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("repository root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root: no go.mod of module " + Module + " above the working directory")
		}
		dir = parent
	}
}

// Module is the main module's path.
const Module = "github.com/kong-metrics-sidecar/kong-metrics-sidecar"

func isMainModule(gomod []byte) bool {
	const line = "module " + Module + "\n"
	return len(gomod) >= len(line) && string(gomod[:len(line)]) == line
}
