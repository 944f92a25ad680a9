package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kong-metrics-sidecar/kong-metrics-sidecar/internal/testsupport/harness"
)

// imageBinDirEnv names the directory holding kong-metrics-sidecar,
// kong-metrics-injector and kubectl-kong_metrics as taken from the pulled release image: make e2e
// sets it after make image-bins (the release build, pushed to a registry
// on 127.0.0.1 and pulled back; release/cmd/release -local).
const imageBinDirEnv = "E2E_IMAGE_BIN_DIR"

// imageBinaries are the programs the test runs from the image when
// E2E_IMAGE_BIN_DIR is set; the Kong simulator is never in the image.
var imageBinaries = []string{"kong-metrics-sidecar", "kong-metrics-injector", "kubectl-kong_metrics"}

// ownBinaries returns the project's programs by name: those of the
// release image from E2E_IMAGE_BIN_DIR when it is set (as make e2e sets
// it), else those go build makes (harness.Binaries), as when the test is
// run with go test alone.
func ownBinaries(ctx context.Context) (map[string]string, error) {
	bins, err := harness.Binaries(ctx)
	if err != nil {
		return nil, err
	}
	dir := os.Getenv(imageBinDirEnv)
	if dir == "" {
		return bins, nil
	}
	for _, name := range imageBinaries {
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: the binary from the image: %w", imageBinDirEnv, dir, err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm()&0o100 == 0 {
			return nil, fmt.Errorf("%s=%s: %s is not an executable file", imageBinDirEnv, dir, name)
		}
		bins[name] = path
	}
	return bins, nil
}

// TestOwnBinariesFromImage: with E2E_IMAGE_BIN_DIR set, the test runs the
// binaries there, and a directory without them is an error, not a
// silent fallback to go build.
func TestOwnBinariesFromImage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(imageBinDirEnv, dir)
	if _, err := ownBinaries(t.Context()); err == nil {
		t.Fatalf("ownBinaries with an empty %s: no error", imageBinDirEnv)
	}
	for _, name := range imageBinaries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil { //nolint:gosec // a stand-in executable
			t.Fatal(err)
		}
	}
	bins, err := ownBinaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range imageBinaries {
		if got, want := bins[name], filepath.Join(dir, name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if bins["kong-simulator"] == "" {
		t.Error("no kong-simulator: it is never in the image and must still be built")
	}
}
